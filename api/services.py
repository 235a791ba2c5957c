"""The API's long-lived clients, opened once in the lifespan over the process's shared
clients (``headwater.clients``), closed in reverse."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from acl.directory import GroupDirectory
from acl.keys import Authenticator
from api.answer_cache import AnswerCache
from api.audit import AuditLog
from api.budgets import BudgetGuard
from api.chat.service import Answerer
from api.cost import PriceTable
from api.operations.drift import open_drift
from api.ratelimit import RateLimiter
from api.security import Keys, authenticator, open_directory, open_keys
from api.usage import UsageLedger, following_usage
from core.kafka import KafkaProducer, TopicFollower
from core.redis_store import SharedStore, open_shared_store
from core.settings import Settings
from inference.firewall import PiiFirewall
from inference.pool import BackendPools, Tier, TierPool
from inference.router import ModelRouter
from inference.scoring import AutoRouter
from inference.service import ChatGateway
from inference.tokens import open_token_counter
from inference.vllm import OpenAIBackend
from ingest.publish import DocumentEraser, DocumentPublisher
from retrieval.drift import DriftMonitor
from retrieval.embedding import Embedder
from retrieval.query import SearchPolicy
from retrieval.service import Retriever
from retrieval.store import VectorStore

_log = logging.getLogger(__name__)


@dataclass
class Services:
    """What route handlers reach through ``api.deps``."""

    settings: Settings
    authenticator: Authenticator
    store: VectorStore
    embedder: Embedder
    retriever: Retriever
    router: ModelRouter
    answerer: Answerer
    producer: KafkaProducer
    publisher: DocumentPublisher
    eraser: DocumentEraser
    audit: AuditLog
    directory: GroupDirectory
    keys: Keys
    rate_limiter: RateLimiter
    usage: UsageLedger
    ingest_enabled: bool  # whether this process also runs the ingest worker (/readyz)
    directory_follower: TopicFollower | None = None  # feeds ``directory``
    drift: DriftMonitor | None = None  # query drift per tenant (retrieval.drift)
    shared_store: SharedStore | None = None  # Redis (HEADWATER_REDIS_URL), when configured


def _audit_log(settings: Settings, shared: KafkaProducer, stack: AsyncExitStack) -> AuditLog:
    """Acknowledged records go through the shared producer (linger 0: each waits for its
    ack); queued ones, in batches, through a producer of their own that keeps retrying
    through a broker outage for 5 minutes (librdkafka's default), reports only failures
    (a success wakes no thread of ours) and is flushed when the process stops."""
    if settings.audit_sync:
        return AuditLog(shared, settings.audit_topic, acknowledged=True)
    producer = KafkaProducer(
        settings.kafka_bootstrap, linger_ms=1, errors_only=True, message_timeout_ms=300_000
    )
    stack.callback(producer.close)
    audit = AuditLog(
        producer,
        settings.audit_topic,
        acknowledged=False,
        batch_s=settings.audit_linger_ms / 1000,
    )
    stack.callback(audit.close)  # before the producer's close: send, then flush
    return audit


def _budgets(settings: Settings, store: SharedStore | None) -> BudgetGuard | None:
    """The budget guard when budgets are configured (the settings require the store)."""
    if not settings.budgets or store is None:
        return None
    return BudgetGuard(
        settings.budgets,
        store,
        PriceTable(settings.model_prices),
        reservation_ttl_s=settings.budget_reservation_ttl_s,
        currency=settings.cost_currency,
    )


def _answer_cache(settings: Settings, store: SharedStore | None) -> AnswerCache | None:
    """The answer cache when some tenant's answers are cached (the settings require the
    store then)."""
    policies = {settings.answer_cache, *settings.answer_cache_tenant_policies.values()}
    if store is None or policies == {"off"}:
        return None
    return AnswerCache(
        store, ttl_s=settings.answer_cache_ttl_s, similarity=settings.answer_cache_similarity
    )


def _tokenizers(settings: Settings) -> list[Path | None]:
    """The tokenizer file of each configured tier."""
    if settings.llm_large_url:
        return [settings.llm_small_tokenizer, settings.llm_large_tokenizer]
    return [settings.llm_small_tokenizer]


def _urls(value: str) -> list[str]:
    return [url.strip() for url in value.split(",") if url.strip()]


def backend_pools(settings: Settings) -> BackendPools:
    """Every configured model server, by tier (comma-separated URLs are replicas)."""
    tiers: dict[Tier, tuple[list[str], str]] = {
        "small": (_urls(settings.llm_small_url), settings.llm_small_model)
    }
    if settings.llm_large_url:
        tiers["large"] = (
            _urls(settings.llm_large_url),
            settings.llm_large_model or settings.llm_small_model,
        )
    pools = {
        tier: TierPool(
            tier,
            [
                OpenAIBackend(
                    base_url=url,
                    model=model,
                    timeout_s=settings.llm_timeout_s,
                    first_token_timeout_s=settings.llm_first_token_timeout_s,
                    max_connections=settings.llm_max_inflight_per_backend,
                )
                for url in urls
            ],
            max_inflight=settings.llm_max_inflight_per_backend,
            queue_max=settings.llm_queue_max,
            queue_timeout_s=settings.llm_queue_timeout_s,
        )
        for tier, (urls, model) in tiers.items()
    }
    return BackendPools(pools, health_interval_s=settings.llm_health_interval_s)


@asynccontextmanager
async def open_api_services(
    settings: Settings,
    *,
    store: VectorStore,
    embedder: Embedder,
    producer: KafkaProducer,
    ingest_enabled: bool,
) -> AsyncIterator[Services]:
    """The API's clients over the process's shared ones (opened by ``headwater``)."""
    async with AsyncExitStack() as stack:
        keys = await stack.enter_async_context(open_keys(settings, producer))
        directory, directory_follower = await stack.enter_async_context(open_directory(settings))
        shared_store = None
        if settings.redis_url:
            shared_store = await stack.enter_async_context(open_shared_store(settings.redis_url))
        pools = backend_pools(settings)
        stack.push_async_callback(pools.aclose)
        pools.start()
        router = ModelRouter(
            pools, AutoRouter(settings.router_target_large_share, settings.router_window)
        )
        drift = await stack.enter_async_context(open_drift(settings, embedder))
        retriever = Retriever(
            store=store,
            embedder=embedder,
            collection=settings.collection,
            policy=SearchPolicy.from_settings(settings),
            observer=drift.observe if drift is not None else None,
        )
        services = Services(
            settings=settings,
            authenticator=authenticator(settings, keys.authenticator),
            store=store,
            embedder=embedder,
            retriever=retriever,
            router=router,
            answerer=Answerer(
                retriever=retriever,
                router=router,
                gateway=ChatGateway(pools),
                firewall=PiiFirewall(score_threshold=settings.firewall_score_threshold),
                settings=settings,
                tokens=open_token_counter(_tokenizers(settings)),
                budgets=_budgets(settings, shared_store),
                cache=_answer_cache(settings, shared_store),
            ),
            rate_limiter=RateLimiter(
                rate_per_s=settings.rate_limit_rps, burst=settings.rate_limit_burst
            ),
            usage=UsageLedger(),
            producer=producer,
            publisher=DocumentPublisher(producer, settings.documents_topic),
            eraser=DocumentEraser(
                producer,
                documents_topic=settings.documents_topic,
                dlq_topic=settings.dlq_topic,
                audit_topic=settings.audit_topic,
            ),
            audit=_audit_log(settings, producer, stack),
            directory=directory,
            keys=keys,
            ingest_enabled=ingest_enabled,
            directory_follower=directory_follower,
            drift=drift,
            shared_store=shared_store,
        )
        stack.enter_context(following_usage(settings, services.usage))
        yield services

"""Every long-lived client of a process, opened once in the lifespan, closed in reverse."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

from acl.directory import GroupDirectory
from acl.keys import ApiKeyAuthenticator, Authenticator
from acl.oidc import BearerAuthenticator, ClaimMapping, JwksKeys, JwtAuthenticator
from api.answering import Answerer
from api.audit import AuditLog
from api.ratelimit import RateLimiter
from api.usage import UsageLedger, following_usage
from core.settings import Settings
from inference.firewall import PiiFirewall
from inference.pool import BackendPools, Tier, TierPool
from inference.router import ModelRouter
from inference.scoring import AutoRouter
from inference.service import ChatGateway
from inference.vllm import OpenAIBackend
from ingest.kafka import KafkaProducer, follow_topic
from ingest.publish import DocumentPublisher
from ingest.runtime import ingest_worker, open_pipeline_clients
from retrieval.embedding import Embedder
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
    audit: AuditLog
    directory: GroupDirectory
    rate_limiter: RateLimiter
    usage: UsageLedger
    ingest_enabled: bool


def _authenticator(settings: Settings) -> Authenticator:
    """API keys from the key file, and OIDC JWTs when an issuer is configured."""
    api_keys = ApiKeyAuthenticator.from_file(settings.api_keys_file)
    if not settings.oidc_issuer:
        return api_keys
    oidc = JwtAuthenticator(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience or "",
        keys=JwksKeys(url=settings.oidc_jwks_url, path=settings.oidc_jwks_file),
        algorithms=tuple(alg.strip() for alg in settings.oidc_algorithms.split(",") if alg.strip()),
        claims=ClaimMapping(
            user=settings.oidc_user_claim,
            groups=settings.oidc_groups_claim,
            tenant=settings.oidc_tenant_claim,
            department=settings.oidc_department_claim,
        ),
    )
    return BearerAuthenticator(api_keys=api_keys, oidc=oidc)


@contextmanager
def _following_directory(settings: Settings, directory: GroupDirectory) -> Iterator[None]:
    """Keep ``directory`` in step with the principals topic, in a background thread."""
    stop = threading.Event()

    def follow() -> None:
        try:
            follow_topic(
                settings.kafka_bootstrap,
                topic=settings.principals_topic,
                on_record=directory.apply,
                stop=stop,
            )
        except Exception:  # noqa: BLE001 - logged; requests then use credential groups
            _log.exception("the group directory stopped following %s", settings.principals_topic)

    thread = threading.Thread(target=follow, name="headwater-directory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


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
async def open_services(settings: Settings, *, run_ingest: bool) -> AsyncIterator[Services]:
    """Open the clients; with ``run_ingest`` also run the faust worker on this loop."""
    async with AsyncExitStack() as stack:
        authenticator = _authenticator(settings)
        clients = await stack.enter_async_context(open_pipeline_clients(settings))
        store, embedder, producer = clients.store, clients.embedder, clients.producer
        pools = backend_pools(settings)
        stack.push_async_callback(pools.aclose)
        pools.start()
        router = ModelRouter(
            pools, AutoRouter(settings.router_target_large_share, settings.router_window)
        )
        retriever = Retriever(store=store, embedder=embedder, collection=settings.collection)
        services = Services(
            settings=settings,
            authenticator=authenticator,
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
            ),
            rate_limiter=RateLimiter(
                rate_per_s=settings.rate_limit_rps, burst=settings.rate_limit_burst
            ),
            usage=UsageLedger(),
            producer=producer,
            publisher=DocumentPublisher(producer, settings.documents_topic),
            audit=_audit_log(settings, producer, stack),
            directory=GroupDirectory(),
            ingest_enabled=run_ingest,
        )
        stack.enter_context(_following_directory(settings, services.directory))
        stack.enter_context(following_usage(settings, services.usage))
        if run_ingest:
            await stack.enter_async_context(
                ingest_worker(settings, store=store, embedder=embedder, producer=producer)
            )
            _log.info("ingest worker consuming %s", settings.documents_topic)
        yield services

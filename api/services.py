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
from core.settings import Settings
from inference.router import ModelRouter
from inference.service import ChatService
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


def _backends(settings: Settings) -> ModelRouter:
    small = OpenAIBackend(
        base_url=settings.llm_small_url,
        model=settings.llm_small_model,
        timeout_s=settings.llm_timeout_s,
    )
    large = None
    if settings.llm_large_url:
        large = OpenAIBackend(
            base_url=settings.llm_large_url,
            model=settings.llm_large_model or settings.llm_small_model,
            timeout_s=settings.llm_timeout_s,
        )
    return ModelRouter(small=small, large=large)


@asynccontextmanager
async def open_services(settings: Settings, *, run_ingest: bool) -> AsyncIterator[Services]:
    """Open the clients; with ``run_ingest`` also run the faust worker on this loop."""
    async with AsyncExitStack() as stack:
        authenticator = _authenticator(settings)
        clients = await stack.enter_async_context(open_pipeline_clients(settings))
        store, embedder, producer = clients.store, clients.embedder, clients.producer
        router = _backends(settings)
        for backend in router.backends.values():
            stack.push_async_callback(backend.aclose)
        retriever = Retriever(store=store, embedder=embedder, collection=settings.collection)
        services = Services(
            settings=settings,
            authenticator=authenticator,
            store=store,
            embedder=embedder,
            retriever=retriever,
            router=router,
            answerer=Answerer(
                retriever=retriever, router=router, chat=ChatService(), settings=settings
            ),
            producer=producer,
            publisher=DocumentPublisher(producer, settings.documents_topic),
            audit=AuditLog(producer, settings.audit_topic),
            directory=GroupDirectory(),
            ingest_enabled=run_ingest,
        )
        stack.enter_context(_following_directory(settings, services.directory))
        if run_ingest:
            await stack.enter_async_context(
                ingest_worker(settings, store=store, embedder=embedder, producer=producer)
            )
            _log.info("ingest worker consuming %s", settings.documents_topic)
        yield services

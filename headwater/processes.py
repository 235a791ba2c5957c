"""The processes Headwater runs, assembled from the shared clients (opened once each):

- ``serve``: the API and the ingest worker in one process over one store (the local,
  embedded-store mode: an embedded store belongs to one process);
- ``api``: the API alone, against a Qdrant server;
- ``worker``: the ingest worker alone, with ``/metrics`` on the API's port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from prometheus_client import start_http_server

from api.app import HeadwaterAPI, create_app
from api.services import Services, open_api_services
from core.settings import Settings
from headwater.clients import SharedClients, open_shared_clients
from ingest.runtime import ingest_worker
from retrieval.embedding import Embedder

_log = logging.getLogger(__name__)


@asynccontextmanager
async def open_process(
    settings: Settings, *, run_ingest: bool, embedder: Embedder | None = None
) -> AsyncIterator[Services]:
    """The API's services over the shared clients; with ``run_ingest`` the ingest worker
    too, on the same event loop and over the same store, embedder and producer."""
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_shared_clients(settings, embedder=embedder))
        services = await stack.enter_async_context(
            open_api_services(
                settings,
                store=clients.store,
                embedder=clients.embedder,
                producer=clients.producer,
                ingest_enabled=run_ingest,
            )
        )
        if run_ingest:
            await stack.enter_async_context(
                ingest_worker(
                    clients.ingest_settings,
                    store=clients.store,
                    embedder=clients.embedder,
                    producer=clients.producer,
                )
            )
            _log.info("ingest worker consuming %s", settings.documents_topic)
        yield services


@asynccontextmanager
async def ingesting(
    settings: Settings, *, embedder: Embedder | None = None
) -> AsyncIterator[SharedClients]:
    """The shared clients with an ingest worker consuming on this event loop, under the
    consumer group the collection's binding records."""
    async with (
        open_shared_clients(settings, embedder=embedder) as clients,
        ingest_worker(
            clients.ingest_settings,
            store=clients.store,
            embedder=clients.embedder,
            producer=clients.producer,
        ),
    ):
        yield clients


def build_app(
    settings: Settings, *, run_ingest: bool = True, embedder: Embedder | None = None
) -> HeadwaterAPI:
    """The API application; with ``run_ingest`` its process also runs the ingest worker."""
    return create_app(
        settings,
        open_services=lambda: open_process(settings, run_ingest=run_ingest, embedder=embedder),
    )


async def run_worker(settings: Settings) -> None:
    """The standalone ``headwater worker`` process: consume until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # /metrics for Prometheus, on the port the API would use (compose and k8s scrape it).
    server, thread = start_http_server(settings.port, addr=settings.host)
    try:
        async with ingesting(settings):
            _log.info(
                "ingest worker consuming %s; metrics on :%s",
                settings.documents_topic,
                settings.port,
            )
            await stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)

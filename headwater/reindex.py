"""``headwater reindex``: build a new collection from the documents topic, then switch.

Blue/green. The new collection (``<alias>__<model>_<dim>__<UTC time>``) is built behind
a second alias, ``<alias>__next``, by an ingest worker of its own, with this process's
embedding model and chunking (``HEADWATER_EMBEDDING_*``, ``HEADWATER_CHUNK_*``) and a
consumer group of its own (``<group>.<collection>``, recorded in the collection's
binding), which replays the documents topic from its first offset. The old collection
keeps serving and its workers keep consuming meanwhile; live events reach both, each
through its own group. When the build has caught up (its group's lag is zero), its
worker stops and the alias is switched in one atomic step. Processes then restarted
with the new model open the new collection, and their ingest worker resumes from the
new collection's own consumer group, so nothing published after the build stopped is
missed. ``--drop-old`` deletes the previous collection after the switch.

A killed re-index resumes: run it again, and the ``__next`` alias, its collection and
its consumer group (committed offsets) pick up where it stopped; events are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from core.kafka import ConsumerLag
from core.settings import Settings
from headwater.clients import open_shared_clients
from ingest.runtime import ingest_worker
from retrieval.embedding import Embedder, open_embedder
from retrieval.schema import versioned_collection

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReindexResult:
    collection: str
    previous: str | None
    consumer_group: str
    chunks: int
    seconds: float
    dropped: bool


def next_alias(alias: str) -> str:
    """The alias a re-index builds behind until the switch."""
    return f"{alias}__next"


async def reindex(
    settings: Settings,
    *,
    drop_old: bool = False,
    console: Console | None = None,
    poll_s: float = 1.0,
    embedder: Embedder | None = None,
) -> ReindexResult:
    """Build (or resume building) the next collection, switch the alias, optionally drop
    the previous collection."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    if embedder is None:
        embedder = await asyncio.to_thread(open_embedder, settings)
    building = settings.model_copy(update={"collection": next_alias(settings.collection)})
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%S")
    fresh = f"{versioned_collection(settings.collection, embedder.model_name, embedder.dim)}"
    fresh = f"{fresh}__{stamp}"
    async with open_shared_clients(
        building,
        embedder=embedder,
        build=fresh,
        consumer_group=f"{settings.consumer_group}.{fresh}",
    ) as clients:
        name, group = clients.store.collection, clients.ingest_settings.consumer_group
        resumed = name != fresh
        console.print(
            f"{'resuming' if resumed else 'building'} {name} with {clients.binding.describe()}"
            f"\n  from {settings.documents_topic}, consumer group {group}"
        )
        async with ingest_worker(
            clients.ingest_settings,
            store=clients.store,
            embedder=clients.embedder,
            producer=clients.producer,
        ):
            await _until_caught_up(clients.ingest_settings, console, poll_s)
        previous = clients.store.promote(settings.collection)
        chunks = clients.store.count()
        console.print(
            f"alias {settings.collection} now names {name} ({chunks} chunks)"
            + (f"; it named {previous}" if previous else "")
        )
        dropped = False
        if drop_old and previous and previous != name:
            clients.store.drop_collection(previous)
            dropped = True
            console.print(f"dropped {previous}")
    return ReindexResult(name, previous, group, chunks, time.monotonic() - started, dropped)


async def _until_caught_up(settings: Settings, console: Console, poll_s: float) -> None:
    """Wait, with a progress bar and ETA, until the build's consumer group has committed
    every offset that existed when it last looked (two readings in a row)."""
    probe = ConsumerLag(
        settings.kafka_bootstrap, group=settings.consumer_group, topic=settings.documents_topic
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("replaying", total=1)
            total: int | None = None
            settled = 0
            while settled < 2:
                await asyncio.sleep(poll_s)
                behind = sum((await asyncio.to_thread(probe.read)).values())
                total = max(total or 0, behind)
                progress.update(task, total=max(total, 1), completed=total - behind)
                settled = settled + 1 if behind == 0 else 0
    finally:
        probe.close()

"""The evaluation's ingest half: publish a BEIR corpus as document events (the connector
SDK, Kafka, the ingest worker) and wait until the store has applied every one of them.

Each document becomes one ``upsert`` into the evaluation's tenant, readable by one group
only, with a version taken from the clock: re-running against a Qdrant server re-indexes
rather than being skipped as "not newer" (the worker skips events not newer than the
applied one). A document with neither title nor text is not published; one with a
title alone is published with its title as text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

from core.errors import HeadwaterError
from headwater.beir import BeirDocument
from ingest.models import DocumentEvent
from ingest.publish import DocumentPublisher
from retrieval.schema import DocumentKey
from retrieval.store import VectorStore

# (stage, done, total): how the harness reports progress; the CLI draws bars with it.
ProgressCallback = Callable[[str, int, int], None]

# Events in flight to the broker at once: enough to keep it busy, bounded in memory.
PUBLISH_WINDOW = 256
# Keys per state lookup while waiting (one retrieve call of the store each).
STATE_BATCH = 1024


class EvaluationError(HeadwaterError):
    """The evaluation cannot go on (nothing indexed, a stalled worker, no hybrid search)."""


def clock_version() -> int:
    """A document version that rises with each run: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def corpus_events(
    documents: Iterable[BeirDocument], *, tenant: str, group: str, version: int
) -> list[DocumentEvent]:
    """One upsert per document with text, readable by ``group`` alone."""
    events = []
    for doc in documents:
        text = doc.text.strip() or doc.title.strip()
        if not text:
            continue
        events.append(
            DocumentEvent(
                op="upsert",
                tenant=tenant,
                doc_id=doc.doc_id,
                version=version,
                acl={"groups": [group]},
                title=doc.title or None,
                text=text,
                source="eval",
            )
        )
    return events


async def publish_all(
    publisher: DocumentPublisher,
    events: Sequence[DocumentEvent],
    *,
    progress: ProgressCallback,
) -> None:
    """Publish ``events``, ``PUBLISH_WINDOW`` awaiting their acknowledgement at a time."""
    progress("publish", 0, len(events))
    for start in range(0, len(events), PUBLISH_WINDOW):
        window = events[start : start + PUBLISH_WINDOW]
        await asyncio.gather(*(publisher.publish_async(event) for event in window))
        progress("publish", start + len(window), len(events))


async def wait_indexed(
    store: VectorStore,
    keys: Sequence[DocumentKey],
    *,
    version: int,
    stall_timeout_s: float,
    progress: ProgressCallback,
    poll_s: float = 0.5,
) -> None:
    """Return once the store has applied ``version`` of every document in ``keys``.

    Raises :class:`EvaluationError` when no document was applied for ``stall_timeout_s``
    (a dead-lettered event never arrives: the message points at the DLQ).
    """
    last_change, done = time.monotonic(), -1
    while True:
        indexed = await asyncio.to_thread(_applied, store, keys, version)
        progress("index", indexed, len(keys))
        if indexed == len(keys):
            return
        if indexed != done:
            last_change, done = time.monotonic(), indexed
        elif time.monotonic() - last_change > stall_timeout_s:
            raise EvaluationError(
                f"{len(keys) - indexed} of {len(keys)} documents not indexed, none applied for "
                f"{stall_timeout_s:.0f}s: check the worker's log and the DLQ (headwater dlq list)"
            )
        await asyncio.sleep(poll_s)


def _applied(store: VectorStore, keys: Sequence[DocumentKey], version: int) -> int:
    applied = 0
    for start in range(0, len(keys), STATE_BATCH):
        states = store.document_states(keys[start : start + STATE_BATCH])
        applied += sum(
            1 for state in states.values() if state.version >= version and not state.deleted
        )
    return applied

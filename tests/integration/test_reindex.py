"""Collections bound to their model and chunking, and the blue/green re-index, on the real
broker, the real model and the embedded engine (issue 16)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from acl.filter import PermissionFilter
from acl.models import Principal
from core.settings import Settings
from headwater.clients import SharedClients, open_shared_clients
from headwater.processes import ingesting
from headwater.reindex import reindex
from ingest.models import DocumentEvent
from ingest.publish import DocumentPublisher
from retrieval.binding import CollectionMismatch
from retrieval.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.integration
HR = PermissionFilter.for_principal(Principal(tenant="acme", user_id="h", groups=("hr",)))
TOPICS = ["salary review", "badge renewal", "travel policy", "parental leave", "laptops"]


def _text(topic: str, sentences: int = 40) -> str:
    return " ".join(
        f"Rule {i} of the {topic} procedure applies to staff." for i in range(sentences)
    )


def _event(doc_id: str, topic: str) -> DocumentEvent:
    return DocumentEvent(
        op="upsert", tenant="acme", doc_id=doc_id, version=1, acl={"groups": ["hr"]},
        title=topic, text=_text(topic),
    )  # fmt: skip


async def _until(check: object, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")


def _documents(clients: SharedClients) -> dict[str, list[str]]:
    chunks: dict[str, list[str]] = {}
    for chunk in sorted(clients.store.chunks(tenant="acme"), key=lambda c: c.chunk_no):
        chunks.setdefault(chunk.doc_id, []).append(chunk.text)
    return chunks


def _covered(chunks: list[str], text: str) -> bool:
    """Every sentence of the document is in one of its chunks, in order."""
    joined = " ".join(chunks)
    return all(f"Rule {i} of" in joined for i in range(40)) and all(c in text for c in chunks)


async def test_a_changed_configuration_is_refused_then_reindexed_without_losing_a_document(
    kafka_bootstrap: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    old = Settings(
        kafka_bootstrap=kafka_bootstrap,
        data_dir=tmp_path,
        documents_topic=f"test-{run}.documents",
        dlq_topic=f"test-{run}.documents.dlq",
        consumer_group=f"test-{run}",
        topic_partitions=2,
        chunk_tokens=200,
        chunk_overlap_tokens=40,
    )
    new = old.model_copy(update={"chunk_tokens": 48, "chunk_overlap_tokens": 8})
    texts = {f"doc-{n}": _text(topic) for n, topic in enumerate(TOPICS)}

    async with ingesting(old, embedder=embedder) as serving:
        publisher = DocumentPublisher(serving.producer, old.documents_topic)
        for n, topic in enumerate(TOPICS[:4]):
            await publisher.publish_async(_event(f"doc-{n}", topic))
        await _until(lambda: len(_documents(serving)) == 4, "the first four documents indexed")
        before = serving.store.collection

    # Another chunking (the same holds for another model) is refused with what to do.
    with pytest.raises(CollectionMismatch, match="chunking 200/40 tokens vs 48/8") as refused:
        async with open_shared_clients(new, embedder=embedder):
            pass
    assert "headwater reindex" in str(refused.value)

    async with ingesting(old, embedder=embedder) as serving:
        publisher = DocumentPublisher(serving.producer, old.documents_topic)
        # The re-index builds beside the serving collection, which keeps answering.
        answered: list[int] = []
        stop = asyncio.Event()

        async def search_meanwhile() -> None:
            vector = embedder.embed(["salary review"])[0]
            while not stop.is_set():
                hits = await asyncio.to_thread(serving.store.search, vector, permission=HR, limit=3)
                answered.append(len(hits))
                await asyncio.sleep(0.05)

        searcher = asyncio.create_task(search_meanwhile())
        build = asyncio.create_task(reindex(new, poll_s=0.5))
        await publisher.publish_async(_event("doc-4", TOPICS[4]))  # live, during the build
        result = await build
        stop.set()
        await searcher
        assert answered and min(answered) > 0, "searches kept being answered"
        assert result.previous == before and result.collection != before
        # Published after the build's worker stopped: only the old collection's worker
        # sees it now; the new collection's own consumer group will, after the restart.
        await publisher.publish_async(_event("doc-5", "expense claims"))
        texts["doc-5"] = _text("expense claims")
        await _until(lambda: "doc-5" in _documents(serving), "the old worker consuming")

    # Restarted with the new configuration: it opens the new collection and resumes.
    async with ingesting(new, embedder=embedder) as restarted:
        assert restarted.store.collection == result.collection
        assert restarted.ingest_settings.consumer_group == result.consumer_group
        await _until(lambda: len(_documents(restarted)) == 6, "every document in the new one")
        rebuilt = _documents(restarted)
        for doc_id, text in texts.items():
            assert _covered(rebuilt[doc_id], text), doc_id
            assert len(rebuilt[doc_id]) > 1, "re-chunked with the new, smaller chunks"
        restarted.store.drop_collection(before)
        assert not (old.store_path / before).exists()
        with pytest.raises(ValueError, match="in use"):
            restarted.store.drop_collection(result.collection)

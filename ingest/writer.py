"""Applies document events to the vector store: chunk, embed, upsert (or delete / re-ACL)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from ingest.chunking import Chunker
from ingest.models import DocumentEvent
from retrieval.embedding import Embedder
from retrieval.schema import ChunkPoint, point_id
from retrieval.store import VectorStore

_tracer = trace.get_tracer("headwater.ingest")


def acl_payload(event: DocumentEvent) -> dict[str, Any]:
    return {
        "acl_users": list(event.acl.users),
        "acl_groups": list(event.acl.groups),
        "acl_public": event.acl.public,
    }


class IndexWriter:
    """Turns one validated event into store operations. Re-applying an event is harmless:
    point ids are deterministic and chunks past the new end are removed."""

    def __init__(
        self, *, store: VectorStore, embedder: Embedder, chunker: Chunker, collection: str
    ):
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._collection = collection

    async def apply(self, event: DocumentEvent) -> int:
        """Apply ``event``; returns the number of chunks written."""
        if event.op == "delete":
            await asyncio.to_thread(self._store.delete_document, event.tenant, event.doc_id)
            return 0
        if event.op == "acl":
            await asyncio.to_thread(
                self._store.set_payload, event.tenant, event.doc_id, acl_payload(event)
            )
            return 0
        return await self._upsert(event)

    async def _upsert(self, event: DocumentEvent) -> int:
        text = event.text or ""
        with _tracer.start_as_current_span("ingest.chunk") as span:
            chunks = self._chunker.split(text)
            span.set_attribute("headwater.chunk.count", len(chunks))
        inputs = [f"{event.title}\n{c.text}" if event.title else c.text for c in chunks]
        with _tracer.start_as_current_span(
            f"embeddings {self._embedder.model_name}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._embedder.model_name)
            span.set_attribute("headwater.embeddings.inputs", len(inputs))
            vectors = await asyncio.to_thread(self._embedder.embed, inputs)
        base = {
            "tenant": event.tenant,
            "doc_id": event.doc_id,
            "version": event.version,
            "title": event.title,
            "uri": event.uri,
            "source": event.source,
            **acl_payload(event),
            "indexed_at": datetime.now(UTC).isoformat(),
            "content_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "metadata": dict(event.metadata),
        }
        points = [
            ChunkPoint(
                id=point_id(event.tenant, event.doc_id, chunk.chunk_no),
                vector=vector,
                payload={**base, "chunk_no": chunk.chunk_no, "text": chunk.text},
            )
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        with _tracer.start_as_current_span(
            f"upsert {self._collection}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("db.system.name", "qdrant")
            span.set_attribute("db.operation.name", "upsert")
            span.set_attribute("db.collection.name", self._collection)
            span.set_attribute("db.operation.batch.size", len(points))
            await asyncio.to_thread(self._store.upsert, points)
            await asyncio.to_thread(
                self._store.delete_document, event.tenant, event.doc_id, from_chunk=len(points)
            )
        return len(points)

"""ACL-filtered retrieval: embed the query, search with the caller's permission filter."""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from acl.filter import PermissionFilter
from retrieval.embedding import Embedder
from retrieval.schema import Hit
from retrieval.store import VectorStore

_tracer = trace.get_tracer("headwater.retrieval")


class Retriever:
    """Finds the chunks most similar to a query among those the caller may see."""

    def __init__(self, *, store: VectorStore, embedder: Embedder, collection: str):
        self._store = store
        self._embedder = embedder
        self._collection = collection

    async def search(self, query: str, *, permission: PermissionFilter, top_k: int) -> list[Hit]:
        with _tracer.start_as_current_span(
            f"embeddings {self._embedder.model_name}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._embedder.model_name)
            (vector,) = await asyncio.to_thread(self._embedder.embed, [query])
        with _tracer.start_as_current_span(
            f"retrieval {self._collection}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("db.system.name", "qdrant")
            span.set_attribute("db.operation.name", "query")
            span.set_attribute("db.collection.name", self._collection)
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("db.query.limit", top_k)
            hits = await asyncio.to_thread(
                self._store.search, vector, permission=permission, limit=top_k
            )
            # Ids and scores only: the text of what was retrieved never goes into spans.
            span.set_attribute(
                "headwater.retrieval.ids", [f"{h.doc_id}#{h.chunk_no}" for h in hits]
            )
            span.set_attribute("headwater.retrieval.scores", [round(h.score, 4) for h in hits])
            span.set_attribute("db.response.returned_rows", len(hits))
            return hits

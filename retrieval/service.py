"""ACL-filtered retrieval: embed the query, search with the caller's permission filter.

The search mode (dense, sparse or hybrid), the fusion and the reranking come from a
:class:`~retrieval.query.SearchPolicy` (``HEADWATER_RETRIEVAL_*``); a call may choose
another mode. The question is embedded even for a sparse search: every hit's ``score`` is
its cosine similarity to the question (the grounding floor reads it), and the embedding
is handed back in a :class:`~retrieval.query.SearchResult` so that nobody embeds the
same question twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from opentelemetry import trace

from acl.filter import PermissionFilter
from retrieval.embedding import Embedder
from retrieval.query import FusionMethod, SearchMode, SearchPolicy, SearchQuery, SearchResult
from retrieval.schema import Hit
from retrieval.sparse import LexicalEncoder
from retrieval.store import VectorStore

_tracer = trace.get_tracer("headwater.retrieval")
_log = logging.getLogger(__name__)

# Told of every retrieval: the tenant, the question's embedding and the best hit's score
# (None: nothing readable at all). ``retrieval.drift.DriftMonitor.observe`` is one.
QueryObserver = Callable[[str, Sequence[float], float | None], None]


def _link_ingest_traces(span: trace.Span, hits: Sequence[Hit]) -> None:
    """Span links from the retrieval span to the ingest spans that indexed each hit."""
    for hit in hits:
        ingest = hit.chunk.ingest_span()
        if ingest is None:
            continue
        context = trace.SpanContext(
            trace_id=ingest[0],
            span_id=ingest[1],
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        span.add_link(context, {"headwater.chunk": f"{hit.doc_id}#{hit.chunk_no}"})


class Retriever:
    """Finds the chunks most relevant to a query among those the caller may see."""

    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: Embedder,
        collection: str,
        policy: SearchPolicy | None = None,
        lexical: LexicalEncoder | None = None,
        observer: QueryObserver | None = None,
    ):
        self._store = store
        self._embedder = embedder
        self._collection = collection
        self._policy = policy or SearchPolicy()
        self._lexical = lexical or LexicalEncoder()
        self._observer = observer

    @property
    def policy(self) -> SearchPolicy:
        return self._policy

    async def embed_query(self, question: str) -> list[float]:
        """The question's dense embedding (one ``embeddings`` span)."""
        with _tracer.start_as_current_span(
            f"embeddings {self._embedder.model_name}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._embedder.model_name)
            (vector,) = await asyncio.to_thread(self._embedder.embed, [question])
            return vector

    async def search(
        self,
        query: str,
        *,
        permission: PermissionFilter,
        top_k: int,
        mode: SearchMode | None = None,
    ) -> list[Hit]:
        """The ``top_k`` best chunks the caller may see; ``mode`` None: the policy's."""
        result = await self.retrieve(query, permission=permission, top_k=top_k, mode=mode)
        return result.hits

    async def retrieve(
        self,
        question: str,
        *,
        permission: PermissionFilter,
        top_k: int,
        mode: SearchMode | None = None,
        fusion: FusionMethod | None = None,
        query_vector: Sequence[float] | None = None,
    ) -> SearchResult:
        """Like :meth:`search`, with the embedding used; ``query_vector`` reuses one."""
        vector = (
            list(query_vector) if query_vector is not None else await self.embed_query(question)
        )
        query = self._query(question, vector, mode=mode, fusion=fusion)
        with _tracer.start_as_current_span(
            f"retrieval {self._collection}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("db.system.name", "qdrant")
            span.set_attribute("db.operation.name", "query")
            span.set_attribute("db.collection.name", self._collection)
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("db.query.limit", top_k)
            span.set_attribute("headwater.retrieval.mode", query.mode)
            span.set_attribute("headwater.retrieval.rerank", query.rerank)
            if query.mode == "hybrid":
                span.set_attribute("headwater.retrieval.fusion", query.fusion)
            hits = await asyncio.to_thread(
                self._store.search, query, permission=permission, limit=top_k
            )
            # Ids and scores only: the text of what was retrieved never goes into spans.
            span.set_attribute(
                "headwater.retrieval.ids", [f"{h.doc_id}#{h.chunk_no}" for h in hits]
            )
            span.set_attribute("headwater.retrieval.scores", [round(h.score, 4) for h in hits])
            _link_ingest_traces(span, hits)
            span.set_attribute("db.response.returned_rows", len(hits))
        if self._observer is not None:
            top = max((h.score for h in hits), default=None)
            try:
                self._observer(permission.tenant, vector, top)
            except Exception:  # noqa: BLE001 - monitoring must never fail a search
                _log.warning("the query observer failed", exc_info=True)
        return SearchResult(hits=hits, query_vector=vector)

    def _query(
        self,
        question: str,
        vector: list[float],
        *,
        mode: SearchMode | None,
        fusion: FusionMethod | None,
    ) -> SearchQuery:
        policy = self._policy
        # A collection built before the lexical vector serves dense (retrieval.store).
        chosen = (mode or policy.mode) if self._store.lexical else "dense"
        return SearchQuery(
            vector,
            lexical=None if chosen == "dense" else self._lexical.encode_query(question),
            mode=chosen,
            fusion=fusion or policy.fusion,
            rerank=policy.rerank,
            mmr_diversity=policy.mmr_diversity,
            candidates=policy.candidates,
        )

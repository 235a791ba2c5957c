"""Applies document events to the vector store, in order and idempotently.

Versions: an event not newer than the document's applied version is skipped (stale).
The applied version of every document, deletes included (tombstones), is recorded in
the store's state collection *after* its chunks are written, so a crash in between
re-applies the event on redelivery instead of skipping it.

A tombstone deletes every chunk of its document whatever its version, keeping the
applied version (marked deleted): a newer version brings the document back, an older
one stays stale. After an erasure's tombstone the store purges its files of the deleted
chunks (``VectorStore.purge_deleted``), once per batch.

Work is shared across a batch: every upsert's chunks are embedded in one call.
Unchanged text (same SHA-256) is never re-embedded; an ACL change never is. Each chunk
is stored with its lexical (BM25) terms beside its embedding, both of the same passage.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import context, trace

from ingest.chunking import Chunk, Chunker
from ingest.models import DocumentEvent, Tombstone
from retrieval.embedding import Embedder
from retrieval.records import DocumentFields, StoredChunk, acl_update, document_update
from retrieval.schema import ChunkPoint, DocumentKey, DocumentState, point_id
from retrieval.sparse import LexicalEncoder
from retrieval.store import VectorStore

_tracer = trace.get_tracer("headwater.ingest")

Outcome = Literal["applied", "stale"]


@dataclass(frozen=True)
class WriteResult:
    outcome: Outcome
    chunks_embedded: int = 0


_DELETES = ("delete", "tombstone", "erase")


@dataclass
class _Plan:
    event: DocumentEvent | Tombstone
    ctx: context.Context
    kind: Literal["stale", "delete", "tombstone", "erase", "acl", "refresh", "embed"]
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)

    @property
    def document(self) -> DocumentEvent:
        """The event of a plan that writes one (every kind but the tombstones')."""
        if isinstance(self.event, Tombstone):
            raise TypeError("a tombstone carries no document")
        return self.event


def _passage(event: DocumentEvent, chunk: Chunk) -> str:
    """What a chunk is embedded and term-weighted as: its document's title, then its text."""
    return f"{event.title}\n{chunk.text}" if event.title else chunk.text


def _sha(event: DocumentEvent) -> str:
    return hashlib.sha256((event.text or "").encode()).hexdigest()


def document_fields(event: DocumentEvent, ctx: context.Context | None = None) -> DocumentFields:
    """What every chunk of the event's document version carries (text aside), with the
    ingest span of ``ctx`` (the event's process span) as the chunks' ``ingest_trace``."""
    span = trace.get_current_span(ctx).get_span_context() if ctx is not None else None
    return DocumentFields(
        ingest_trace=(
            f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"
            if span is not None and span.is_valid
            else None
        ),
        tenant=event.tenant,
        doc_id=event.doc_id,
        version=event.version,
        acl=event.acl,
        title=event.title,
        uri=event.uri,
        source=event.source,
        content_sha256=_sha(event),
        metadata=dict(event.metadata),
    )


class IndexWriter:
    """Turns validated events into store operations; see the module docstring."""

    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: Embedder,
        chunker: Chunker,
        collection: str,
        lexical: LexicalEncoder | None = None,
    ):
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._collection = collection
        self._lexical = lexical or LexicalEncoder()

    async def apply(self, event: DocumentEvent) -> WriteResult:
        """Apply one event in the current trace context."""
        (result,) = await self.apply_batch([(event, context.get_current())])
        return result

    async def apply_batch(
        self, items: Sequence[tuple[DocumentEvent | Tombstone, context.Context]]
    ) -> list[WriteResult]:
        """Apply events and tombstones in order. Each comes with the trace context of
        its own ``process`` span; shared work (one embedding call) goes under the first."""
        keys = list(dict.fromkeys((event.tenant, event.doc_id) for event, _ in items))
        states = await asyncio.to_thread(self._store.document_states, keys)
        plans = [self._plan(event, ctx, states) for event, ctx in items]
        await self._embed([plan for plan in plans if plan.kind == "embed"])
        touched: dict[DocumentKey, DocumentState] = {}
        for plan in plans:
            if plan.kind != "stale":
                await self._write(plan)
                key = (plan.event.tenant, plan.event.doc_id)
                if key in states:  # a tombstone of a document never seen records none
                    touched[key] = states[key]
        erasures = [plan for plan in plans if plan.kind == "erase"]
        if erasures:
            await self._purge(erasures)
        await asyncio.to_thread(self._store.put_document_states, touched)
        return [
            WriteResult("stale" if plan.kind == "stale" else "applied", len(plan.vectors))
            for plan in plans
        ]

    def _plan(
        self,
        event: DocumentEvent | Tombstone,
        ctx: context.Context,
        states: dict[DocumentKey, DocumentState],
    ) -> _Plan:
        """Decide what the event needs, updating ``states`` as if it were applied."""
        key = (event.tenant, event.doc_id)
        state = states.get(key)
        if isinstance(event, Tombstone):
            if state is not None:
                states[key] = DocumentState(state.version, deleted=True)
            return _Plan(event, ctx, "erase" if event.erasure_id else "tombstone")
        if state is not None and event.version <= state.version:
            return _Plan(event, ctx, "stale")
        if event.op == "delete":
            states[key] = DocumentState(event.version, deleted=True)
            return _Plan(event, ctx, "delete")
        if event.op == "acl":
            states[key] = DocumentState(
                event.version,
                deleted=state.deleted if state else False,
                content_sha256=state.content_sha256 if state else None,
            )
            return _Plan(event, ctx, "acl")
        sha = _sha(event)
        states[key] = DocumentState(event.version, content_sha256=sha)
        if state is not None and not state.deleted and state.content_sha256 == sha:
            return _Plan(event, ctx, "refresh")
        with _tracer.start_as_current_span("ingest.chunk", context=ctx) as span:
            chunks = self._chunker.split(event.text or "")
            span.set_attribute("headwater.chunk.count", len(chunks))
        return _Plan(event, ctx, "embed", chunks=chunks)

    async def _embed(self, plans: list[_Plan]) -> None:
        inputs = [_passage(plan.document, chunk) for plan in plans for chunk in plan.chunks]
        if not inputs:
            return
        links = [trace.Link(trace.get_current_span(p.ctx).get_span_context()) for p in plans[1:]]
        with _tracer.start_as_current_span(
            f"embeddings {self._embedder.model_name}",
            context=plans[0].ctx,
            kind=trace.SpanKind.CLIENT,
            links=links,
        ) as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._embedder.model_name)
            span.set_attribute("headwater.embeddings.inputs", len(inputs))
            span.set_attribute("headwater.embeddings.documents", len(plans))
            vectors = await asyncio.to_thread(self._embedder.embed, inputs)
        start = 0
        for plan in plans:
            plan.vectors = vectors[start : start + len(plan.chunks)]
            start += len(plan.chunks)

    async def _write(self, plan: _Plan) -> None:
        with _tracer.start_as_current_span(
            f"{'delete' if plan.kind in _DELETES else 'upsert'} {self._collection}",
            context=plan.ctx,
            kind=trace.SpanKind.CLIENT,
        ) as span:
            span.set_attribute("db.system.name", "qdrant")
            span.set_attribute("db.collection.name", self._collection)
            span.set_attribute("headwater.write.kind", plan.kind)
            if plan.kind in _DELETES:
                span.set_attribute("db.operation.name", "delete")
                tenant, doc_id = plan.event.tenant, plan.event.doc_id
                await asyncio.to_thread(self._store.delete_document, tenant, doc_id)
                return
            event = plan.document
            if plan.kind == "acl":
                span.set_attribute("db.operation.name", "set_payload")
                # The chunks now carry the document's new version with its new ACL.
                payload = acl_update(event.tenant, event.acl, event.version)
                await asyncio.to_thread(
                    self._store.set_payload, event.tenant, event.doc_id, payload
                )
            elif plan.kind == "refresh":
                span.set_attribute("db.operation.name", "set_payload")
                await asyncio.to_thread(
                    self._store.set_payload,
                    event.tenant,
                    event.doc_id,
                    document_update(document_fields(event, plan.ctx)),
                )
            else:
                span.set_attribute("db.operation.name", "upsert")
                span.set_attribute("db.operation.batch.size", len(plan.vectors))
                await asyncio.to_thread(self._upsert, plan)

    async def _purge(self, erasures: list[_Plan]) -> None:
        """Purge the store's files of the chunks just deleted (once for the batch)."""
        links = [trace.Link(trace.get_current_span(p.ctx).get_span_context()) for p in erasures]
        with _tracer.start_as_current_span(
            f"purge {self._collection}",
            context=erasures[0].ctx,
            kind=trace.SpanKind.CLIENT,
            links=links[1:],
        ) as span:
            span.set_attribute("db.system.name", "qdrant")
            span.set_attribute("db.collection.name", self._collection)
            span.set_attribute("db.operation.name", "purge")
            span.set_attribute("headwater.erasure.count", len(erasures))
            await asyncio.to_thread(self._store.purge_deleted)

    def _upsert(self, plan: _Plan) -> None:
        event = plan.document
        document = document_fields(event, plan.ctx)
        self._store.upsert(
            [
                ChunkPoint(
                    id=point_id(event.tenant, event.doc_id, chunk.chunk_no),
                    vector=vector,
                    chunk=StoredChunk(document, chunk.chunk_no, chunk.text),
                    lexical=self._lexical.encode_document(_passage(event, chunk)),
                )
                for chunk, vector in zip(plan.chunks, plan.vectors, strict=True)
            ]
        )
        # A new version with fewer chunks leaves no orphans behind.
        self._store.delete_document(event.tenant, event.doc_id, from_chunk=len(plan.vectors))

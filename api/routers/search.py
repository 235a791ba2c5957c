"""``POST /v1/search``: ACL-filtered retrieval alone."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from acl.filter import PermissionFilter, RequestFilter
from api.audit import AuditRecord, ServedChunk
from api.deps import AuditDep, PrincipalDep, RetrieverDep, ServicesDep

router = APIRouter(tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(8, ge=1)
    filter: RequestFilter | None = None


class SearchResult(BaseModel):
    doc_id: str
    chunk_no: int
    score: float
    title: str | None
    uri: str | None
    source: str | None
    version: int
    text: str


class SearchResponse(BaseModel):
    object: str = "list"
    data: list[SearchResult]


@router.post("/v1/search")
async def search(
    body: SearchRequest,
    principal: PrincipalDep,
    retriever: RetrieverDep,
    services: ServicesDep,
    audit: AuditDep,
    request: Request,
) -> SearchResponse:
    started = time.perf_counter()
    permission = PermissionFilter.for_principal(principal, body.filter)
    top_k = min(body.top_k, services.settings.retrieval_max_top_k)
    hits = await retriever.search(body.query, permission=permission, top_k=top_k)
    await audit.write(
        AuditRecord.for_principal(
            principal,
            request_id=request.state.request_id,
            client_request_id=getattr(request.state, "client_request_id", None),
            endpoint="search",
            chunks=[ServedChunk.of(hit) for hit in hits],
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    )
    return SearchResponse(
        data=[
            SearchResult(
                doc_id=hit.doc_id,
                chunk_no=hit.chunk_no,
                score=round(hit.score, 4),
                title=hit.chunk.title,
                uri=hit.chunk.uri,
                source=hit.chunk.source,
                version=hit.chunk.version,
                text=hit.chunk.text,
            )
            for hit in hits
        ]
    )

"""``POST /v1/search``: ACL-filtered retrieval alone."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from acl.filter import PermissionFilter, RequestFilter
from api.deps import PrincipalDep, RetrieverDep, ServicesDep

router = APIRouter(tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    body: SearchRequest, principal: PrincipalDep, retriever: RetrieverDep, services: ServicesDep
) -> SearchResponse:
    permission = PermissionFilter.for_principal(principal, body.filter)
    top_k = min(body.top_k, services.settings.retrieval_max_top_k)
    hits = await retriever.search(body.query, permission=permission, top_k=top_k)
    return SearchResponse(
        data=[
            SearchResult(
                doc_id=hit.doc_id,
                chunk_no=hit.chunk_no,
                score=round(hit.score, 4),
                title=hit.payload.get("title"),
                uri=hit.payload.get("uri"),
                source=hit.payload.get("source"),
                version=int(hit.payload.get("version", 0)),
                text=str(hit.payload.get("text", "")),
            )
            for hit in hits
        ]
    )

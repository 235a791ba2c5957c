"""The permission filter as plain data; the vector-store adapter translates it.

    must:   tenant == principal.tenant  (and every narrowing condition)
    should: acl_public == true
            acl_users contains principal.user_id
            acl_groups contains any of principal.groups

A request may narrow the filter, never widen it: narrowing only adds ``must``
conditions, and the ACL part is derived from the authenticated principal alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from acl.models import Principal
from core.errors import InvalidRequest


class RequestFilter(BaseModel):
    """What a caller may add to narrow a search (``headwater.retrieval.filter``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    source: list[str] | None = Field(None, description="Only these sources.")
    doc_id: list[str] | None = Field(None, description="Only these documents.")
    metadata: dict[str, str | int | bool] | None = Field(
        None, description="Exact matches on metadata fields."
    )


@dataclass(frozen=True)
class MatchAny:
    """``key`` equals one of ``values`` (a keyword or list field)."""

    key: str
    values: tuple[str | int | bool, ...]


@dataclass(frozen=True)
class PermissionFilter:
    """A search filter that always carries the caller's tenant and ACL clauses.

    Build it with :meth:`for_principal`; the vector store's search accepts nothing else.
    """

    tenant: str
    user_id: str
    groups: tuple[str, ...]
    narrowing: tuple[MatchAny, ...] = field(default=())

    @classmethod
    def for_principal(
        cls, principal: Principal, request: RequestFilter | None = None
    ) -> PermissionFilter:
        return cls(
            tenant=principal.tenant,
            user_id=principal.user_id,
            groups=principal.groups,
            narrowing=_narrowing(request),
        )


def _narrowing(request: RequestFilter | None) -> tuple[MatchAny, ...]:
    if request is None:
        return ()
    conditions: list[MatchAny] = []
    if request.source:
        conditions.append(MatchAny("source", tuple(request.source)))
    if request.doc_id:
        conditions.append(MatchAny("doc_id", tuple(request.doc_id)))
    for key, value in (request.metadata or {}).items():
        if not key or "." in key or "[" in key:
            raise InvalidRequest(
                f"metadata filter key {key!r} must be a plain field name", param="filter"
            )
        conditions.append(MatchAny(f"metadata.{key}", (value,)))
    return tuple(conditions)

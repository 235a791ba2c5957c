"""The permission filter as plain data; the vector-store adapter translates it.

    must:   tenant == principal.tenant  (and every narrowing condition)
    should: acl_public == true
            acl_users contains principal.user_id
            acl_groups contains any of principal.groups

The store evaluates that rule as one condition on one indexed field: each chunk carries
its document's *access keys* (:func:`document_access_keys`: ``(tenant, "public")``,
``(tenant, "user", id)`` for each user, ``(tenant, "group", name)`` for each group), and
a caller may read a chunk when it shares a key with the caller's own
(:attr:`PermissionFilter.access_keys`). Every key names its tenant, so sharing one
implies the tenant clause; the encoding (a JSON array) cannot make two different
triples equal, whatever characters tenant, user and group names hold. One keyword
condition instead of a tenant match plus three ``should`` clauses halves the cost of
resolving a caller's readable set, which hybrid search pays twice (the lexical IDF
statistics are counted over that set).

A request may narrow the filter, never widen it: narrowing only adds ``must``
conditions, and the ACL part is derived from the authenticated principal alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from acl.models import DocumentAcl, Principal
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

    @property
    def access_keys(self) -> tuple[str, ...]:
        """The keys this caller reads by: a chunk is readable when it carries one of them."""
        return (
            access_key(self.tenant, "public"),
            access_key(self.tenant, "user", self.user_id),
            *(access_key(self.tenant, "group", group) for group in self.groups),
        )


def access_key(tenant: str, kind: str, name: str | None = None) -> str:
    """One access key: a JSON array, so no two different triples encode alike."""
    parts = [tenant, kind] if name is None else [tenant, kind, name]
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def document_access_keys(tenant: str, acl: DocumentAcl) -> list[str]:
    """The access keys a document's ACL grants: what each of its chunks carries."""
    keys = [access_key(tenant, "public")] if acl.public else []
    keys.extend(access_key(tenant, "user", user) for user in acl.users)
    keys.extend(access_key(tenant, "group", group) for group in acl.groups)
    return keys


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

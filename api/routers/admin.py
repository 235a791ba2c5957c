"""Admin endpoints for API keys, for principals with the ``admin`` role, within their
own tenant, on the key registry the process uses (the key file, or the keys topic that
every replica follows). The CLI (``headwater keys``) does the same."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from acl.keys import KeyEntry
from acl.models import Principal
from api.deps import ServicesDep
from api.roles import KeyAdminDep
from core.errors import NotFound

router = APIRouter(tags=["admin"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str = Field(min_length=1)
    groups: list[str] = []
    department: str | None = None
    roles: list[str] = []


class KeyInfo(BaseModel):
    id: str
    tenant: str
    user_id: str
    groups: list[str]
    department: str | None
    roles: list[str]
    created_at: str | None
    revoked_at: str | None

    @classmethod
    def of(cls, entry: KeyEntry) -> KeyInfo:
        return cls(
            id=entry.key_id,
            tenant=entry.tenant,
            user_id=entry.user_id,
            groups=entry.groups,
            department=entry.department,
            roles=entry.roles,
            created_at=entry.created_at,
            revoked_at=entry.revoked_at,
        )


class CreatedKey(KeyInfo):
    key: str = Field(description="Shown once; only its SHA-256 is stored.")


class KeyList(BaseModel):
    object: str = "list"
    data: list[KeyInfo]


@router.post("/v1/admin/keys", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyRequest, admin: KeyAdminDep, services: ServicesDep) -> CreatedKey:
    new = Principal(tenant=admin.tenant, **body.model_dump())
    key, entry = await asyncio.to_thread(services.keys.registry.create, new)
    return CreatedKey(key=key, **KeyInfo.of(entry).model_dump())


@router.get("/v1/admin/keys")
async def list_keys(admin: KeyAdminDep, services: ServicesDep) -> KeyList:
    tenant = admin.tenant
    entries = await asyncio.to_thread(services.keys.registry.entries)
    return KeyList(data=[KeyInfo.of(entry) for entry in entries if entry.tenant == tenant])


@router.delete("/v1/admin/keys/{key_id}")
async def revoke_key(key_id: str, admin: KeyAdminDep, services: ServicesDep) -> KeyInfo:
    tenant = admin.tenant
    store = services.keys.registry
    entries = await asyncio.to_thread(store.entries)
    if not any(entry.key_id == key_id and entry.tenant == tenant for entry in entries):
        raise NotFound(f"no key {key_id!r} in your tenant", param="key_id", code="key_not_found")
    return KeyInfo.of(await asyncio.to_thread(store.revoke, key_id))

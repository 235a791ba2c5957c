"""Document ingest over HTTP, for connectors that cannot speak Kafka.

Each call produces one ``headwater.document/1`` event to ``headwater.documents.v1``
and answers 202 with where it landed; the worker applies it like any other event.
The tenant is the caller's own; only principals with the ``connector`` role may write.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from acl.models import DocumentAcl, Principal
from api.deps import PrincipalDep, ServicesDep
from core.errors import PermissionDenied
from ingest.models import DocumentEvent

router = APIRouter(tags=["documents"])

CONNECTOR_ROLE = "connector"


class DocumentIn(BaseModel):
    """A document to index; ``tenant`` comes from the caller's credentials."""

    model_config = ConfigDict(extra="forbid", strict=True)

    doc_id: str = Field(min_length=1, max_length=512)
    version: int = Field(ge=0)
    text: str = Field(min_length=1)
    acl: DocumentAcl = Field(default_factory=DocumentAcl)
    title: str | None = None
    content_type: str = "text/plain"
    uri: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class AclIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=0)
    acl: DocumentAcl


class Accepted(BaseModel):
    """Where the event landed; the document is applied asynchronously."""

    doc_id: str
    op: str
    version: int
    topic: str
    partition: int
    offset: int


def _connector(principal: Principal) -> Principal:
    if CONNECTOR_ROLE not in principal.roles:
        raise PermissionDenied(
            "writing documents needs the 'connector' role on the API key", code="not_a_connector"
        )
    return principal


async def _publish(services: ServicesDep, event: DocumentEvent) -> Accepted:
    delivered = await services.publisher.publish_async(event)
    return Accepted(
        doc_id=event.doc_id,
        op=event.op,
        version=event.version,
        topic=delivered.topic,
        partition=delivered.partition,
        offset=delivered.offset,
    )


@router.post("/v1/documents", status_code=status.HTTP_202_ACCEPTED)
async def upsert_document(
    body: DocumentIn, principal: PrincipalDep, services: ServicesDep
) -> Accepted:
    tenant = _connector(principal).tenant
    event = DocumentEvent(op="upsert", tenant=tenant, **body.model_dump())
    return await _publish(services, event)


@router.put("/v1/documents/{doc_id}/acl", status_code=status.HTTP_202_ACCEPTED)
async def replace_acl(
    doc_id: str, body: AclIn, principal: PrincipalDep, services: ServicesDep
) -> Accepted:
    tenant = _connector(principal).tenant
    event = DocumentEvent(
        op="acl", tenant=tenant, doc_id=doc_id, version=body.version, acl=body.acl
    )
    return await _publish(services, event)


@router.delete("/v1/documents/{doc_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_document(
    doc_id: str, version: int, principal: PrincipalDep, services: ServicesDep
) -> Accepted:
    tenant = _connector(principal).tenant
    event = DocumentEvent(op="delete", tenant=tenant, doc_id=doc_id, version=version)
    return await _publish(services, event)

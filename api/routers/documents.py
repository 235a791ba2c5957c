"""Document ingest over HTTP, for connectors that cannot speak Kafka.

Each call produces one ``headwater.document/1`` event to ``headwater.documents.v1``
and answers 202 with where it landed; the worker applies it like any other event (a
delete is followed by its tombstones). ``DELETE ...?erase=true`` erases the document
instead (``ingest.publish.DocumentEraser``): tombstones on the documents and dead-letter
topics, and an erasure record on the audit topic. The tenant is the caller's own; only
principals with the ``connector`` role may write (an erasure: ``connector`` or ``admin``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from acl.models import DocumentAcl, Principal
from api.deps import PrincipalDep, ServicesDep
from api.roles import ADMIN, CONNECTOR, ConnectorDep, check_role
from core.errors import InvalidRequest
from ingest.models import DocumentEvent
from ingest.publish import Requester

router = APIRouter(tags=["documents"])


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


class Erasure(BaseModel):
    """An erasure under way: the chunks go when the worker reads the tombstone (seconds),
    the records from Kafka's disks within the compaction bound (docs/operating.md)."""

    doc_id: str
    op: Literal["erase"] = "erase"
    erasure_id: str = Field(description="The id of its record on the audit topic.")
    topic: str
    partition: int
    offset: int = Field(description="Offset of the document's tombstone.")


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
    body: DocumentIn, connector: ConnectorDep, services: ServicesDep
) -> Accepted:
    tenant = connector.tenant
    event = DocumentEvent(op="upsert", tenant=tenant, **body.model_dump())
    return await _publish(services, event)


@router.put("/v1/documents/{doc_id}/acl", status_code=status.HTTP_202_ACCEPTED)
async def replace_acl(
    doc_id: str, body: AclIn, connector: ConnectorDep, services: ServicesDep
) -> Accepted:
    tenant = connector.tenant
    event = DocumentEvent(
        op="acl", tenant=tenant, doc_id=doc_id, version=body.version, acl=body.acl
    )
    return await _publish(services, event)


@router.delete("/v1/documents/{doc_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_document(
    doc_id: str,
    principal: PrincipalDep,
    services: ServicesDep,
    version: Annotated[
        int | None,
        Query(ge=0, description="The delete's version; required unless erase=true."),
    ] = None,
    erase: Annotated[
        bool,
        Query(
            description="Erase the document everywhere (chunks, documents topic, dead "
            "letters), recorded on the audit topic; unconditional, so no version."
        ),
    ] = False,
) -> Accepted | Erasure:
    if erase:
        return await _erase(doc_id, principal, services)
    tenant = check_role(principal, CONNECTOR, doing="writing documents").tenant
    if version is None:
        raise InvalidRequest("a delete needs its 'version' (or erase=true)", param="version")
    event = DocumentEvent(op="delete", tenant=tenant, doc_id=doc_id, version=version)
    return await _publish(services, event)


async def _erase(doc_id: str, principal: Principal, services: ServicesDep) -> Erasure:
    check_role(principal, CONNECTOR, ADMIN, doing="erasing documents")
    requester = Requester(user_id=principal.user_id, via="api", key_id=principal.key_id)
    record = await services.eraser.erase(principal.tenant, doc_id, requester=requester)
    return Erasure(
        doc_id=doc_id,
        erasure_id=record.erasure_id,
        topic=services.settings.documents_topic,
        partition=record.documents_partition,
        offset=record.documents_offset,
    )

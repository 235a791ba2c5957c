"""The operator's JSON API. Every route takes its caller through ``api.deps`` (and a
role through ``api.roles``) and stays inside the caller's tenant; the console calls
these exactly as any other client would."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from acl.models import Principal
from api.audit import AuditRecord
from api.deps import AuditDep, PrincipalDep, ServicesDep
from api.operations import trail
from api.operations.drift import DriftReport
from api.operations.models import (
    AuditList,
    DeadLetterInfo,
    DeadLetterList,
    Me,
    OperationsSnapshot,
    Replayed,
)
from api.operations.snapshot import operations_snapshot
from api.roles import AdminDep, AuditorDep
from core.errors import InvalidRequest, NotFound, UpstreamUnavailable
from core.kafka import read_to_end
from ingest.dead_letters import DeadLetter, dead_letters, find_dead_letter, replay

router = APIRouter(tags=["operations"])

FLUSH_TIMEOUT_S = 5.0


@router.get("/v1/me")
async def me(principal: PrincipalDep) -> Me:
    """The caller as the server resolved it: tenant, user, groups, roles."""
    return _me(principal)


def _me(principal: Principal) -> Me:
    return Me(
        tenant=principal.tenant,
        user_id=principal.user_id,
        groups=list(principal.groups),
        department=principal.department,
        roles=list(principal.roles),
        key_id=principal.key_id,
    )


@router.get("/v1/admin/operations")
async def operations(_admin: AdminDep, services: ServicesDep) -> OperationsSnapshot:
    """This process's own metrics (process-wide counts, as its ``/metrics`` serves)."""
    return operations_snapshot(services.settings, ingest_enabled=services.ingest_enabled)


@router.get("/v1/admin/dlq")
async def list_dead_letters(
    admin: AdminDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterList:
    """The dead letters of the caller's tenant, oldest first, with their reasons."""
    settings = services.settings

    def read() -> tuple[list[DeadLetterInfo], bool]:
        letters: list[DeadLetterInfo] = []
        records = dead_letters(
            settings.kafka_bootstrap, topic=settings.dlq_topic, tenant=admin.tenant
        )
        for record in records:
            if len(letters) == limit:
                return letters, True
            letters.append(DeadLetterInfo.of(DeadLetter.of(record)))
        return letters, False

    data, truncated = await asyncio.to_thread(read)
    return DeadLetterList(data=data, truncated=truncated)


@router.post("/v1/admin/dlq/{partition}/{offset}/replay")
async def replay_dead_letter(
    partition: int, offset: int, admin: AdminDep, services: ServicesDep
) -> Replayed:
    """Send one dead letter of the caller's tenant back to the documents topic."""
    settings = services.settings

    def run() -> Replayed:
        record = find_dead_letter(
            settings.kafka_bootstrap, topic=settings.dlq_topic, partition=partition, offset=offset
        )
        letter = DeadLetter.of(record) if record is not None else None
        if record is None or letter is None or letter.tenant != admin.tenant:
            # Another tenant's letter is as absent as a missing one.
            raise NotFound(
                f"no dead letter at {partition}/{offset} in your tenant",
                code="dead_letter_not_found",
            )
        sent_to = replay(services.producer, record, documents_topic=settings.documents_topic)
        return Replayed(
            partition=partition, offset=offset, key=letter.key, documents_partition=sent_to
        )

    return await asyncio.to_thread(run)


@router.get("/v1/audit")
async def audit_trail(
    auditor: AuditorDep,
    services: ServicesDep,
    audit: AuditDep,
    doc_id: Annotated[str | None, Query(description="Requests served this document.")] = None,
    request_id: Annotated[str | None, Query(description="One request's record.")] = None,
    user_id: Annotated[str | None, Query(description="Requests of this user.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditList:
    """Audit records of the caller's tenant, newest first: of the requests that were
    served ``doc_id``, one request, or one user's (exactly one of them)."""
    given = {"doc_id": doc_id, "request_id": request_id, "user_id": user_id}
    chosen = [(name, value) for name, value in given.items() if value]
    if len(chosen) != 1:
        raise InvalidRequest("give exactly one of doc_id, request_id, user_id", param="doc_id")
    name, value = chosen[0]
    wanted = {
        "doc_id": trail.served_document,
        "request_id": trail.of_request,
        "user_id": trail.of_user,
    }[name](value)
    # Read-your-writes: this process's queued records are acknowledged before the read.
    if not await audit.flush(FLUSH_TIMEOUT_S):
        raise UpstreamUnavailable("the audit trail is not reachable; try again", code="audit_busy")
    settings = services.settings

    def read() -> tuple[list[AuditRecord], bool]:
        messages = read_to_end(settings.kafka_bootstrap, topic=settings.audit_topic)
        return trail.matching(messages, tenant=auditor.tenant, wanted=wanted, limit=limit)

    data, truncated = await asyncio.to_thread(read)
    return AuditList(data=data, truncated=truncated)


@router.get("/v1/drift")
async def drift(admin: AdminDep, services: ServicesDep) -> DriftReport:
    """Query drift of the caller's tenant: each signal, its threshold, whether it alerts."""
    monitor = services.drift
    if monitor is None:
        raise NotFound("drift monitoring is off (HEADWATER_DRIFT_ENABLED)", code="drift_disabled")
    return DriftReport.of(monitor.state(admin.tenant), monitor.policy)

"""``GET /v1/usage``: the chargeback report of the caller's tenant, for principals with
the ``admin`` or ``billing`` role. Numbers are the tokens the model servers reported,
read back from the audit topic (see ``api.usage``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.deps import AuditDep, ServicesDep
from api.roles import BillingDep
from api.usage import UsageLedger, UsageReport, parse_group_by, parse_window
from core.errors import UpstreamUnavailable

router = APIRouter(tags=["usage"])

CATCH_UP_TIMEOUT_S = 5.0


async def get_usage_ledger(request: Request) -> UsageLedger:
    ledger: UsageLedger = request.app.state.services.usage
    return ledger


UsageLedgerDep = Annotated[UsageLedger, Depends(get_usage_ledger)]


@router.get("/v1/usage", response_model_by_alias=True)
async def usage_report(
    principal: BillingDep,
    ledger: UsageLedgerDep,
    audit: AuditDep,
    services: ServicesDep,
    group_by: Annotated[str, Query(description="Comma-separated dimensions.")] = "department",
    start: Annotated[str | None, Query(alias="from", description="ISO 8601 date or time.")] = None,
    end: Annotated[str | None, Query(alias="to", description="ISO 8601 date or time.")] = None,
) -> UsageReport:
    tenant = principal.tenant
    settings = services.settings
    dimensions = parse_group_by(group_by)
    first, last = parse_window(start, end, now=datetime.now(UTC))
    # Read-your-writes: this process's queued audit records are acknowledged first, then
    # every record acknowledged before now (by any replica) is read into the report.
    flushed = await audit.flush(CATCH_UP_TIMEOUT_S)
    if not flushed or not await ledger.caught_up(CATCH_UP_TIMEOUT_S):
        raise UpstreamUnavailable(
            "usage is still being read from the audit trail; try again shortly",
            code="usage_not_ready",
        )
    report = ledger.report(tenant=tenant, group_by=dimensions, start=first, end=last)
    report.currency = settings.cost_currency
    return report

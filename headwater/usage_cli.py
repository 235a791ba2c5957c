"""``headwater usage``: the chargeback report of ``GET /v1/usage``, read straight from
the audit topic (for operators; no API process or credential needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.usage import UsageLedger, UsageReport, following_usage, parse_group_by, parse_window
from core.errors import InvalidRequest
from core.settings import Settings


def usage(
    tenant: Annotated[str, typer.Option(help="The tenant to report on.")],
    group_by: Annotated[
        str, typer.Option("--group-by", help="Comma-separated: department,key,user,model,day.")
    ] = "department",
    start: Annotated[
        str | None, typer.Option("--from", help="ISO date or time; default: this month.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="ISO date (inclusive) or time; default: now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    timeout_s: Annotated[float, typer.Option(help="How long to read the audit topic.")] = 120.0,
) -> None:
    """Prompt and completion tokens and requests of a tenant, grouped, from the audit topic."""
    try:
        dimensions = parse_group_by(group_by)
        first, last = parse_window(start, end, now=datetime.now(UTC))
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.message, param_hint=f"--{exc.param}") from None
    ledger = UsageLedger()
    with following_usage(Settings(), ledger):
        if not asyncio.run(ledger.caught_up(timeout_s)):
            Console(stderr=True).print(f"[red]error:[/] audit topic not read within {timeout_s}s")
            raise typer.Exit(1)
    report = ledger.report(tenant=tenant, group_by=dimensions, start=first, end=last)
    if as_json:
        print(report.model_dump_json(by_alias=True, indent=2))  # noqa: T201 - for scripts
        return
    Console().print(_table(report))


def _table(report: UsageReport) -> Table:
    counts = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "requests",
        "cost",
        "gpu_seconds",
    )
    table = Table(
        *report.group_by,
        *(name.replace("_", " ") for name in counts),
        title=f"{report.tenant}: {report.start.isoformat()} to {report.end.isoformat()}",
    )
    for row in report.data:
        values = row.model_dump()
        table.add_row(
            *(str(values[name]) if values[name] is not None else "-" for name in report.group_by),
            *(f"{values[name]:,}" for name in counts),
        )
    totals = report.totals.model_dump()
    table.add_section()
    labels = ["total", *[""] * (len(report.group_by) - 1)] if report.group_by else []
    table.add_row(*labels, *(f"{totals[name]:,}" for name in counts))
    return table

"""Token metering for chargeback: Prometheus counters per request, and the usage ledger
behind ``GET /v1/usage``.

The ledger is built from the audit topic, not from this process's memory: every API
replica writes its audit records there (``api.audit``), so any replica, after any
restart, reads the same totals. Records are applied once per ``(tenant, request_id)``
and summed per minute; a report reads whole minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, NamedTuple, Protocol, get_args

from pydantic import MISSING, BaseModel, ConfigDict, Field, ValidationError

from acl.models import Principal
from acl.oidc import OIDC_KEY_PREFIX
from api.audit import AuditRecord
from api.cost import as_currency, to_nanos
from core.errors import InvalidRequest
from core.kafka import TopicFollower
from core.metrics import COST, COST_PER_REQUEST, GPU_SECONDS, TOKENS
from core.settings import Settings
from ingest.models import ErasureRecord

_log = logging.getLogger(__name__)

GroupBy = Literal["department", "key", "user", "model", "day"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)


def _is_erasure(value: bytes) -> bool:
    try:
        ErasureRecord.model_validate_json(value)
    except ValidationError:
        return False
    return True


def _key_label(principal: Principal) -> str:
    if principal.key_id is None:
        return "none"
    # One series for all JWT users: a label per person would grow without bound. The
    # per-user split is in the usage report (group_by=key or user).
    if principal.key_id.startswith(OIDC_KEY_PREFIX):
        return "oidc"
    return principal.key_id


def meter_tokens(principal: Principal, *, model: str, usage: Mapping[str, int]) -> None:
    """Count the tokens a model server reported for one request of ``principal``."""
    labels = (principal.tenant, principal.department or "none", _key_label(principal), model)
    TOKENS.labels(*labels, "prompt").inc(int(usage.get("prompt_tokens", 0)))
    TOKENS.labels(*labels, "completion").inc(int(usage.get("completion_tokens", 0)))


def meter_cost(principal: Principal, *, model: str, cost: float, gpu_seconds: float) -> None:
    """Count one answered request's cost (currency units) and GPU-seconds."""
    labels = (principal.tenant, principal.department or "none", model)
    COST.labels(*labels).inc(cost)
    COST_PER_REQUEST.observe(cost)
    GPU_SECONDS.labels(*labels).inc(gpu_seconds)


class UsageTotals(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = Field(0, description="Answered requests (chat and search).")
    cost: float = Field(0.0, description="At the served models' prices (the report's currency).")
    gpu_seconds: float = Field(
        0.0, description="The answers' shares of their model servers' busy time."
    )


class UsageRow(UsageTotals):
    """Totals of one group. Only the grouped dimensions appear; null = not recorded."""

    department: str | None | MISSING = MISSING
    key: str | None | MISSING = MISSING
    user: str | None | MISSING = MISSING
    model: str | None | MISSING = MISSING
    day: str | None | MISSING = MISSING


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    object: Literal["usage.report"] = "usage.report"
    tenant: str
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    group_by: list[str]
    data: list[UsageRow]
    totals: UsageTotals
    currency: str | None = Field(None, description="The unit of every cost in the report.")


class _Cell(NamedTuple):
    department: str | None
    key: str | None
    user: str | None
    model: str | None


@dataclass
class _Sums:
    """Whole numbers only (cost in nano-units, GPU time in microseconds): sums are exact."""

    prompt: int = 0
    completion: int = 0
    requests: int = 0
    cost_nanos: int = 0
    gpu_us: int = 0

    @classmethod
    def of(cls, record: AuditRecord) -> _Sums:
        return cls(
            record.prompt_tokens,
            record.completion_tokens,
            1,
            to_nanos(record.cost),
            round(record.gpu_seconds * 1_000_000),
        )

    def add(self, other: _Sums) -> None:
        self.prompt += other.prompt
        self.completion += other.completion
        self.requests += other.requests
        self.cost_nanos += other.cost_nanos
        self.gpu_us += other.gpu_us

    def totals(self) -> dict[str, int | float]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "requests": self.requests,
            "cost": as_currency(self.cost_nanos),
            "gpu_seconds": round(self.gpu_us / 1_000_000, 6),
        }


class AuditFeed(Protocol):
    """How far a follower has read the audit topic, and where the topic ends."""

    def positions(self) -> dict[int, int]: ...

    def end_offsets(self, timeout_s: float) -> dict[int, tuple[int, int]]: ...


def _reached(positions: Mapping[int, int], ends: Mapping[int, tuple[int, int]]) -> bool:
    return all(positions.get(p, low) >= high for p, (low, high) in ends.items())


class UsageLedger:
    """Token usage per tenant, minute and (department, key, user, model), in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[str, dict[int, dict[_Cell, _Sums]]] = {}
        # 128-bit digests of "{tenant}/{request_id}": a fraction of the strings' memory.
        self._seen: set[int] = set()
        self._feed: AuditFeed | None = None
        self.skipped = 0

    def attach(self, feed: AuditFeed | None) -> None:
        """The follower that ``caught_up`` asks; None for a ledger filled by hand."""
        self._feed = feed

    def apply_message(self, _key: bytes | None, value: bytes | None) -> bool:
        """Apply one message of the audit topic; False if skipped (invalid or seen)."""
        if value is None:
            return False
        try:
            record = AuditRecord.model_validate_json(value)
            at = datetime.fromisoformat(record.at)
        except (ValidationError, ValueError):
            if _is_erasure(value):  # an erasure's record: no tokens to meter
                return False
            self.skipped += 1
            _log.warning("skipped an audit record that does not parse (%d so far)", self.skipped)
            return False
        return self._apply(record, at)

    def apply(self, record: AuditRecord) -> bool:
        """Apply one audit record; False if its request was applied before."""
        return self._apply(record, datetime.fromisoformat(record.at))

    def _apply(self, record: AuditRecord, at: datetime) -> bool:
        seen = f"{record.tenant}/{record.request_id}".encode()
        digest = int.from_bytes(hashlib.blake2b(seen, digest_size=16).digest())
        minute = int(_utc(at).timestamp()) // 60
        cell = _Cell(record.department, record.key_id, record.user_id, record.model)
        with self._lock:
            if digest in self._seen:
                return False
            self._seen.add(digest)
            cells = self._minutes.setdefault(record.tenant, {}).setdefault(minute, {})
            cells.setdefault(cell, _Sums()).add(_Sums.of(record))
        return True

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until every record acknowledged before this call has been applied; False
        if that did not happen within ``timeout_s`` (the report may then be incomplete)."""
        feed = self._feed
        if feed is None:
            return True
        deadline = time.monotonic() + timeout_s
        while True:  # a transient error (a partition's leader just moved) is retried
            left_s = deadline - time.monotonic()
            try:
                ends = await asyncio.wait_for(asyncio.to_thread(feed.end_offsets, left_s), left_s)
                break
            except Exception:  # noqa: BLE001 - any failure to learn the end means "not known"
                if time.monotonic() + 0.1 >= deadline:
                    _log.warning("cannot read the end of the audit topic", exc_info=True)
                    return False
                await asyncio.sleep(0.1)
        while not _reached(feed.positions(), ends):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def report(
        self, *, tenant: str, group_by: list[str], start: datetime, end: datetime
    ) -> UsageReport:
        """Usage of ``tenant`` from ``start`` until ``end``, summed per distinct value of
        the ``group_by`` dimensions. The resolution is a minute: ``start`` rounds down to
        its minute, ``end`` up (a minute counts if it begins before ``end``)."""
        _check_group_by(group_by)
        first, end_s = int(_utc(start).timestamp()) // 60, _utc(end).timestamp()
        groups: dict[tuple[str | None, ...], _Sums] = {}
        total = _Sums()
        with self._lock:
            for minute, cells in self._minutes.get(tenant, {}).items():
                if minute < first or minute * 60 >= end_s:
                    continue
                for cell, sums in cells.items():
                    values = _dimensions(cell, minute)
                    group = tuple(values[name] for name in group_by)
                    groups.setdefault(group, _Sums()).add(sums)
                    total.add(sums)
        rows = [
            UsageRow(**dict(zip(group_by, group, strict=True)), **sums.totals())
            for group, sums in sorted(groups.items(), key=lambda item: _order(item[0]))
        ]
        return UsageReport(
            tenant=tenant,
            start=start,
            end=end,
            group_by=group_by,
            data=rows,
            totals=UsageTotals(**total.totals()),
        )


def _dimensions(cell: _Cell, minute: int) -> dict[str, str | None]:
    day = datetime.fromtimestamp(minute * 60, UTC).date().isoformat()
    return {**cell._asdict(), "day": day}


def _order(group: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in group)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_group_by(text: str) -> list[str]:
    """``department,model`` → ``["department", "model"]``; raises ``InvalidRequest``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    _check_group_by(names)
    return names


def _check_group_by(names: list[str]) -> None:
    unknown = [name for name in names if name not in GROUP_BY]
    if unknown:
        raise InvalidRequest(
            f"unknown group_by {unknown[0]!r}: use {', '.join(GROUP_BY)}", param="group_by"
        )
    if len(set(names)) != len(names):
        raise InvalidRequest("group_by names a dimension twice", param="group_by")


def _moment(text: str, *, param: str, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:  # a date: the start of that day, or for ``to`` its end
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=int(end_of_day)), datetime.min.time(), UTC)
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        raise InvalidRequest(
            f"{param} must be an ISO 8601 date or date-time, e.g. 2026-11-01", param=param
        ) from None


def parse_window(start: str | None, end: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    """The report window: ``from`` (default: the start of this month, UTC) until ``to``
    (default: ``now``; a date means the end of that day). Raises ``InvalidRequest``."""
    now = _utc(now)
    first = (
        _moment(start, param="from", end_of_day=False)
        if start
        else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    )
    last = _moment(end, param="to", end_of_day=True) if end else now
    if last <= first:
        raise InvalidRequest("'to' must be later than 'from'", param="to")
    return first, last


@contextmanager
def following_usage(settings: Settings, ledger: UsageLedger) -> Iterator[TopicFollower]:
    """Keep ``ledger`` in step with the audit topic, from its beginning, in a thread."""
    follower = TopicFollower(
        settings.kafka_bootstrap, topic=settings.audit_topic, on_record=ledger.apply_message
    )
    follower.start()
    ledger.attach(follower)
    try:
        yield follower
    finally:
        ledger.attach(None)
        follower.close()

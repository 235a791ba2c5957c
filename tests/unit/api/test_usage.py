"""The usage ledger (aggregation, idempotency, windows, grouping, tenants), the token
counters, and ``GET /v1/usage`` on a small app with a fake principal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from acl.keys import KeyEntry
from acl.models import Principal
from api.audit import AuditRecord
from api.deps import get_principal
from api.errors import register_error_handlers
from api.routers.usage import router
from api.usage import UsageLedger, meter_tokens, parse_group_by, parse_window
from core.errors import InvalidRequest
from core.metrics import TOKENS
from ingest.models import ErasureRecord

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def _record(
    request_id: str,
    *,
    at: str = "2026-11-05T10:00:30+00:00",
    tenant: str = "acme",
    user: str = "alice",
    department: str | None = "hr",
    key: str | None = "k-alice",
    model: str | None = "small-m",
    prompt: int = 10,
    completion: int = 5,
    cost: float = 0.0,
    gpu_seconds: float = 0.0,
) -> AuditRecord:
    return AuditRecord(
        request_id=request_id,
        at=at,
        tenant=tenant,
        user_id=user,
        department=department,
        key_id=key,
        endpoint="chat",
        chunks=[],
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        gpu_seconds=gpu_seconds,
        latency_ms=1.0,
    )


def _ledger(*records: AuditRecord) -> UsageLedger:
    ledger = UsageLedger()
    for record in records:
        ledger.apply(record)
    return ledger


def _rows(ledger: UsageLedger, group_by: list[str], tenant: str = "acme") -> list[dict[str, Any]]:
    report = ledger.report(tenant=tenant, group_by=group_by, start=NOV, end=DEC)
    return [row.model_dump() for row in report.data]


def test_report_sums_tokens_and_requests_per_department() -> None:
    ledger = _ledger(
        _record("r1", prompt=10, completion=5, cost=0.1, gpu_seconds=0.25),
        _record("r2", prompt=7, completion=3, cost=0.2, gpu_seconds=0.000001),
        _record("r3", department="finance", user="bob", key="k-bob", prompt=1, completion=1,
                cost=0.000000001, gpu_seconds=1.5),
        _record("r4", department=None, user="carol", key=None, prompt=2, completion=0),
    )  # fmt: skip
    report = ledger.report(tenant="acme", group_by=["department"], start=NOV, end=DEC)
    # Costs and GPU time add up exactly (0.1 + 0.2 is 0.30000000000000004 in floats).
    assert [row.model_dump() for row in report.data] == [
        {"department": "finance", "prompt_tokens": 1, "completion_tokens": 1,
         "total_tokens": 2, "requests": 1, "cost": 0.000000001, "gpu_seconds": 1.5},
        {"department": "hr", "prompt_tokens": 17, "completion_tokens": 8,
         "total_tokens": 25, "requests": 2, "cost": 0.3, "gpu_seconds": 0.250001},
        {"department": None, "prompt_tokens": 2, "completion_tokens": 0,
         "total_tokens": 2, "requests": 1, "cost": 0.0, "gpu_seconds": 0.0},
    ]  # fmt: skip
    assert report.totals.model_dump() == {
        "prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29, "requests": 4,
        "cost": 0.300000001, "gpu_seconds": 1.750001,
    }  # fmt: skip


def test_a_request_is_counted_once_however_often_it_is_read() -> None:
    ledger = UsageLedger()
    assert ledger.apply(_record("r1")) is True
    assert ledger.apply(_record("r1")) is False
    body = _record("r1").model_dump_json(by_alias=True).encode()
    assert ledger.apply_message(b"acme/r1", body) is False
    assert ledger.apply_message(b"other/r1", _record("r1", tenant="other").model_dump_json(
        by_alias=True).encode()) is True  # fmt: skip
    assert _rows(ledger, [])[0]["requests"] == 1


def test_unreadable_messages_and_tombstones_are_skipped() -> None:
    ledger = UsageLedger()
    assert ledger.apply_message(b"k", None) is False
    assert ledger.apply_message(b"k", b"not json") is False
    assert ledger.apply_message(b"k", json.dumps({"tenant": "acme"}).encode()) is False
    assert ledger.skipped == 2
    assert _rows(ledger, ["department"]) == []


def test_erasure_records_on_the_audit_topic_are_not_usage_nor_unreadable() -> None:
    ledger = UsageLedger()
    erasure = ErasureRecord(
        erasure_id="e1",
        tenant="acme",
        doc_id="d1",
        requested_by="dpo@acme.com",
        via="cli",
        documents_partition=0,
        documents_offset=7,
    )
    assert ledger.apply_message(b"acme/e1", erasure.to_json()) is False
    assert ledger.skipped == 0
    assert _rows(ledger, ["department"]) == []


def test_the_window_is_whole_minutes_from_start_until_end() -> None:
    ledger = _ledger(
        _record("before", at="2026-10-31T23:59:59+00:00", prompt=1000),
        _record("first", at="2026-11-01T00:00:00+00:00", prompt=1),
        _record("mid", at="2026-11-15T12:30:59.900000+00:00", prompt=10),
        _record("last", at="2026-11-30T23:59:59+00:00", prompt=100),
        _record("after", at="2026-12-01T00:00:00+00:00", prompt=10000),
    )

    def prompt(start: datetime, end: datetime) -> int:
        return ledger.report(tenant="acme", group_by=[], start=start, end=end).totals.prompt_tokens

    assert prompt(NOV, DEC) == 111
    # the minute of ``end`` counts when ``end`` lies inside it (a report "until now")
    assert prompt(NOV, datetime(2026, 11, 15, 12, 30, 1, tzinfo=UTC)) == 11
    assert prompt(NOV, datetime(2026, 11, 15, 12, 30, tzinfo=UTC)) == 1
    # ``start`` rounds down to its minute
    assert prompt(datetime(2026, 11, 15, 12, 30, 59, tzinfo=UTC), DEC) == 110
    # a naive time is UTC; an offset is converted
    assert prompt(datetime(2026, 11, 30, 23, 59), DEC.replace(tzinfo=None)) == 100
    assert prompt(datetime(2026, 11, 1, 1, 0, tzinfo=UTC), NOV.replace(hour=5)) == 0


def test_group_by_combinations_partition_the_totals() -> None:
    ledger = _ledger(
        _record("a", at="2026-11-02T09:00:00+00:00", model="small-m"),
        _record("b", at="2026-11-02T10:00:00+00:00", model="large-m"),
        _record("c", at="2026-11-03T09:00:00+00:00", user="bob", key="k-bob", model="small-m"),
        _record("d", at="2026-11-03T09:00:00+00:00", user="bob", key="k-bob2", department="it"),
    )
    assert [(r["day"], r["model"], r["requests"]) for r in _rows(ledger, ["day", "model"])] == [
        ("2026-11-02", "large-m", 1),
        ("2026-11-02", "small-m", 1),
        ("2026-11-03", "small-m", 2),
    ]
    by_key = _rows(ledger, ["user", "key"])
    assert [(r["user"], r["key"], r["requests"]) for r in by_key] == [
        ("alice", "k-alice", 2),
        ("bob", "k-bob", 1),
        ("bob", "k-bob2", 1),
    ]
    assert set(by_key[0]) == {"user", "key", "prompt_tokens", "completion_tokens",
                              "total_tokens", "requests", "cost", "gpu_seconds"}  # fmt: skip
    everything = _rows(ledger, ["department", "key", "user", "model", "day"])
    assert len(everything) == 4
    assert sum(r["total_tokens"] for r in everything) == 4 * 15
    assert _rows(ledger, []) == [
        {
            "prompt_tokens": 40,
            "completion_tokens": 20,
            "total_tokens": 60,
            "requests": 4,
            "cost": 0.0,
            "gpu_seconds": 0.0,
        }  # fmt: skip
    ]


def test_a_tenant_sees_only_its_own_usage() -> None:
    ledger = _ledger(_record("a"), _record("b", tenant="globex", department="hr"))
    assert [r["requests"] for r in _rows(ledger, ["department"])] == [1]
    assert [r["requests"] for r in _rows(ledger, ["department"], tenant="globex")] == [1]
    assert _rows(ledger, ["department"], tenant="initech") == []


def test_unknown_or_repeated_dimensions_are_refused() -> None:
    assert parse_group_by("department, model") == ["department", "model"]
    assert parse_group_by("") == []
    for bad in ("tenant", "department,department", "department,prompt"):
        with pytest.raises(InvalidRequest) as raised:
            parse_group_by(bad)
        assert raised.value.param == "group_by"
    with pytest.raises(InvalidRequest):
        UsageLedger().report(tenant="acme", group_by=["text"], start=NOV, end=DEC)


def test_window_defaults_to_this_month_and_dates_cover_whole_days() -> None:
    now = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    assert parse_window(None, None, now=now) == (NOV, now)
    assert parse_window("2026-11-01", "2026-11-30", now=now) == (NOV, DEC)
    assert parse_window("2026-11-01T02:00:00+02:00", None, now=now)[0] == NOV
    for start, end, param in (("yesterday", None, "from"), (None, "2026-13-01", "to"),
                              ("2026-11-05", "2026-11-04", "to")):  # fmt: skip
        with pytest.raises(InvalidRequest) as raised:
            parse_window(start, end, now=now)
        assert raised.value.param == param


def test_tokens_are_counted_by_tenant_department_key_and_model() -> None:
    assert TOKENS._labelnames == ("tenant", "department", "key", "model", "kind")

    def count(key: str, kind: str) -> float:
        value = TOKENS.labels("t-meter", "hr", key, "m", kind)._value.get()
        return float(value)

    before = count("abc123", "prompt"), count("oidc", "completion")
    key_principal = KeyEntry(key="secret", tenant="t-meter", user_id="u", department="hr")
    assert key_principal.principal().key_id == key_principal.key_id != "secret"
    meter_tokens(key_principal.principal().model_copy(update={"key_id": "abc123"}),
                 model="m", usage={"prompt_tokens": 7, "completion_tokens": 2})  # fmt: skip
    jwt_user = Principal(tenant="t-meter", user_id="u", department="hr", key_id="oidc:sub-1")
    meter_tokens(jwt_user, model="m", usage={"prompt_tokens": 1, "completion_tokens": 3})
    assert (count("abc123", "prompt"), count("oidc", "completion")) == (
        before[0] + 7,
        before[1] + 3,
    )


def test_audit_records_carry_the_key_id() -> None:
    principal = Principal(tenant="acme", user_id="alice", key_id="abc123")
    record = AuditRecord.for_principal(
        principal, request_id="r", endpoint="search", chunks=[], latency_ms=1.0
    )
    assert record.key_id == "abc123"


# --- GET /v1/usage ----------------------------------------------------------------------


def _client(ledger: UsageLedger, principal: Principal) -> TestClient:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(router)

    async def flushed(timeout_s: float) -> bool:  # a queued-mode audit log, all sent
        return True

    audit = SimpleNamespace(flush=flushed)
    app.state.services = SimpleNamespace(
        usage=ledger, audit=audit, settings=SimpleNamespace(cost_currency="EUR")
    )
    app.dependency_overrides[get_principal] = lambda: principal
    return TestClient(app)


BILLING = Principal(tenant="acme", user_id="finance-bot", roles=("billing",))


def test_billing_gets_the_report_of_its_own_tenant() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ledger = _ledger(
        _record("a", at=now.isoformat(), prompt=3, completion=4, cost=0.5, gpu_seconds=2.0),
        _record("b", at=now.isoformat(), tenant="globex", prompt=1000),
    )
    response = _client(ledger, BILLING).get("/v1/usage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "usage.report"
    assert body["tenant"] == "acme"
    assert body["group_by"] == ["department"]
    assert datetime.fromisoformat(body["from"]).day == 1
    assert body["data"] == [
        {"department": "hr", "prompt_tokens": 3, "completion_tokens": 4,
         "total_tokens": 7, "requests": 1, "cost": 0.5, "gpu_seconds": 2.0},
    ]  # fmt: skip
    assert body["totals"]["total_tokens"] == 7
    assert body["currency"] == "EUR"


def test_report_params_are_passed_through() -> None:
    ledger = _ledger(_record("a"), _record("b", model="large-m", at="2026-11-06T00:00:00Z"))
    admin = Principal(tenant="acme", user_id="root", roles=("admin",))
    response = _client(ledger, admin).get(
        "/v1/usage", params={"group_by": "model,day", "from": "2026-11-01", "to": "2026-11-05"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["to"].startswith("2026-11-06T00:00:00")
    assert [(r["model"], r["day"]) for r in response.json()["data"]] == [("small-m", "2026-11-05")]


def test_other_roles_are_refused_in_the_error_shape() -> None:
    user = Principal(tenant="acme", user_id="alice", roles=("connector",))
    response = _client(_ledger(_record("a")), user).get("/v1/usage")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize(
    ("params", "param"),
    [({"group_by": "tenant"}, "group_by"), ({"from": "soon"}, "from"), ({"to": "x"}, "to")],
)
def test_bad_params_answer_400_naming_the_param(params: dict[str, str], param: str) -> None:
    response = _client(UsageLedger(), BILLING).get("/v1/usage", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


class StuckFeed:
    """A follower that never gets past offset 3 of a topic that ends at 5."""

    def positions(self) -> dict[int, int]:
        return {0: 3}

    def end_offsets(self, timeout_s: float) -> dict[int, tuple[int, int]]:
        return {0: (0, 5), 1: (2, 2)}


class DoneFeed(StuckFeed):
    def positions(self) -> dict[int, int]:
        return {0: 5}


async def test_caught_up_waits_for_the_end_of_every_partition() -> None:
    ledger = UsageLedger()
    assert await ledger.caught_up(0.1) is True
    ledger.attach(DoneFeed())
    assert await ledger.caught_up(0.1) is True
    ledger.attach(StuckFeed())
    assert await ledger.caught_up(0.1) is False


def test_a_report_that_cannot_catch_up_answers_503() -> None:
    ledger = UsageLedger()
    ledger.attach(StuckFeed())
    client = _client(ledger, BILLING)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("api.routers.usage.CATCH_UP_TIMEOUT_S", 0.1)
        response = client.get("/v1/usage")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "usage_not_ready"

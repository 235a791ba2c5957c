"""The usage ledger follows the audit topic on the real broker: reports equal the tokens
written, a request written twice counts once, a fresh ledger (a restart) reads the same
totals, and a record acknowledged before a report is in it."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from api.audit import AuditLog, AuditRecord
from api.usage import UsageLedger, following_usage
from core.kafka import KafkaProducer, ensure_topics
from core.settings import Settings
from headwater.usage_cli import usage

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
DEPARTMENTS = ("hr", "finance", "eng", None)


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, audit_topic=f"test-{run}.audit", topic_partitions=3
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(params=["acknowledged", "queued"])
async def audit(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[AuditLog]:
    """Both modes: each write acknowledged, or queued in batches (the default)."""
    producer = KafkaProducer(settings.kafka_bootstrap, linger_ms=1)
    acknowledged = request.param == "acknowledged"
    log = AuditLog(producer, settings.audit_topic, acknowledged=acknowledged, batch_s=0.02)
    try:
        yield log
    finally:
        log.close()
        producer.close()


@pytest.fixture
def ledger(settings: Settings) -> Iterator[UsageLedger]:
    ledger = UsageLedger()
    with following_usage(settings, ledger):
        yield ledger


def _records(count: int, seed: int = 7) -> list[AuditRecord]:
    rng = random.Random(seed)
    return [
        AuditRecord(
            request_id=f"req-{i}",
            at=(START + timedelta(minutes=rng.randrange(30 * 24 * 60))).isoformat(),
            tenant=rng.choice(("acme", "acme", "globex")),
            user_id=f"user-{rng.randrange(5)}",
            department=rng.choice(DEPARTMENTS),
            key_id=f"key-{rng.randrange(4)}",
            endpoint="chat",
            chunks=[],
            model=rng.choice(("small-m", "large-m")),
            prompt_tokens=rng.randrange(1, 2000),
            completion_tokens=rng.randrange(0, 500),
            latency_ms=12.5,
        )
        for i in range(count)
    ]


def _expected(records: list[AuditRecord], tenant: str) -> dict[str | None, Counter[str]]:
    sums: dict[str | None, Counter[str]] = {}
    for record in records:
        if record.tenant == tenant:
            sums.setdefault(record.department, Counter()).update(
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                total_tokens=record.prompt_tokens + record.completion_tokens,
                requests=1,
            )
    return sums


def _by_department(ledger: UsageLedger, tenant: str) -> dict[str | None, Counter[str]]:
    report = ledger.report(tenant=tenant, group_by=["department"], start=START, end=END)
    return {
        row.department: Counter(
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            total_tokens=row.total_tokens,
            requests=row.requests,
        )
        for row in report.data
    }


async def test_reports_equal_the_tokens_written_and_survive_a_restart(
    settings: Settings, audit: AuditLog, ledger: UsageLedger
) -> None:
    records = _records(300)
    for record in records:
        await audit.write(record)
    for record in records[:20]:  # written twice (a retried write): counted once
        await audit.write(record)

    assert await audit.flush(30)  # as GET /v1/usage does first: this process's records sent
    assert await ledger.caught_up(30)
    for tenant in ("acme", "globex"):
        assert _by_department(ledger, tenant) == _expected(records, tenant)
    assert _by_department(ledger, "initech") == {}

    restarted = UsageLedger()
    with following_usage(settings, restarted):
        assert await restarted.caught_up(30)
        for tenant in ("acme", "globex"):
            assert _by_department(restarted, tenant) == _expected(records, tenant)


async def test_a_request_is_in_the_report_asked_right_after_it(
    audit: AuditLog, ledger: UsageLedger
) -> None:
    assert await ledger.caught_up(30)
    for n in range(5):
        record = AuditRecord(
            request_id=f"now-{n}",
            tenant="acme",
            user_id="alice",
            department="hr",
            key_id="key-a",
            endpoint="chat",
            chunks=[],
            model="small-m",
            prompt_tokens=11,
            completion_tokens=4,
            latency_ms=1.0,
        )
        await audit.write(record)
        assert await audit.flush(10)
        assert await ledger.caught_up(10)
        now = datetime.now(UTC)
        report = ledger.report(
            tenant="acme", group_by=["key"], start=now - timedelta(hours=1), end=now
        )
        assert [(row.key, row.requests, row.total_tokens) for row in report.data] == [
            ("key-a", n + 1, 15 * (n + 1))
        ]


async def test_the_cli_prints_the_same_report(
    settings: Settings, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(40, seed=11)
    for record in records:
        await audit.write(record)
    assert await audit.flush(30)
    monkeypatch.setenv("HEADWATER_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("HEADWATER_AUDIT_TOPIC", settings.audit_topic)
    app = typer.Typer()
    app.command()(usage)
    args = ["--tenant", "acme", "--from", "2026-11-01", "--to", "2026-11-30", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["from"].startswith("2026-11-01") and report["to"].startswith("2026-12-01")
    assert {row["department"]: row["total_tokens"] for row in report["data"]} == {
        department: sums["total_tokens"] for department, sums in _expected(records, "acme").items()
    }
    table = await asyncio.to_thread(CliRunner().invoke, app, args[:-1] + ["--group-by", "model"])
    assert table.exit_code == 0, table.output
    assert "small-m" in table.stdout and "total" in table.stdout


async def test_queued_records_still_held_at_shutdown_reach_the_topic(settings: Settings) -> None:
    # A batch window far longer than the test: only close() can send these records.
    producer = KafkaProducer(settings.kafka_bootstrap, linger_ms=1, errors_only=True)
    audit = AuditLog(producer, settings.audit_topic, acknowledged=False, batch_s=600)
    records = _records(25, seed=3)
    for record in records:
        await audit.write(record)
    audit.close()
    producer.close()  # flushes: returns once Kafka has acknowledged them

    ledger = UsageLedger()
    with following_usage(settings, ledger):
        assert await ledger.caught_up(30)
        for tenant in ("acme", "globex"):
            assert _by_department(ledger, tenant) == _expected(records, tenant)

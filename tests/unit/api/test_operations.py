"""The operator API's pure parts: audit queries over records of several tenants, the
operations snapshot read from this process's registry, and the role guard."""

from __future__ import annotations

import asyncio

import pytest

from acl.models import Principal
from api.audit import AuditRecord, ServedChunk
from api.operations import trail
from api.operations.snapshot import operations_snapshot
from api.roles import require_role
from core import metrics
from core.errors import PermissionDenied
from core.kafka import Record
from core.settings import Settings


def _message(tenant: str, user: str, request_id: str, doc_ids: list[str]) -> Record:
    record = AuditRecord(
        request_id=request_id,
        tenant=tenant,
        user_id=user,
        endpoint="chat",
        chunks=[ServedChunk(doc_id=d, version=1, chunk_no=0) for d in doc_ids],
        latency_ms=1.0,
    )
    value = record.model_dump_json(by_alias=True).encode()
    return Record(partition=0, offset=0, key=None, value=value, headers={})


MESSAGES = [
    _message("acme", "hannah", "r1", ["wiki:salary"]),
    _message("globex", "gina", "r2", ["wiki:salary"]),  # another tenant's doc of one name
    _message("acme", "evan", "r3", ["wiki:holidays"]),
    Record(partition=0, offset=3, key=None, value=b'{"schema": "headwater.erasure/1"}', headers={}),
    _message("acme", "hannah", "r4", ["wiki:salary", "wiki:holidays"]),
]


def test_who_was_served_a_document_stays_in_the_tenant_newest_first() -> None:
    found, truncated = trail.matching(
        MESSAGES, tenant="acme", wanted=trail.served_document("wiki:salary"), limit=10
    )
    assert [r.request_id for r in found] == ["r4", "r1"] and not truncated


def test_the_newest_matches_are_kept_and_the_rest_reported() -> None:
    found, truncated = trail.matching(
        MESSAGES, tenant="acme", wanted=trail.of_user("hannah"), limit=1
    )
    assert [r.request_id for r in found] == ["r4"] and truncated


def test_one_request_is_found_only_in_its_tenant() -> None:
    assert trail.matching(MESSAGES, tenant="acme", wanted=trail.of_request("r2"), limit=5)[0] == []
    found, _ = trail.matching(MESSAGES, tenant="globex", wanted=trail.of_request("r2"), limit=5)
    assert [r.user_id for r in found] == ["gina"]


def test_the_snapshot_reads_this_processs_metrics() -> None:
    metrics.ROUTE_DECISIONS.labels("large", "unit-test").inc(3)
    metrics.LLM_BACKEND_HEALTHY.labels("small", "unit-test-backend").set(0)
    snapshot = operations_snapshot(Settings(), ingest_enabled=False)
    routes = {(s.labels["tier"], s.labels["reason"]): s.value for s in snapshot.route_decisions}
    assert routes[("large", "unit-test")] >= 3
    # A gauge at zero (a backend down) is shown; a counter at zero is not.
    assert any(s.labels["backend"] == "unit-test-backend" for s in snapshot.llm_backends_healthy)
    assert not snapshot.process_ingest


def test_require_role_refuses_a_principal_without_the_role() -> None:
    principal = Principal(tenant="acme", user_id="u", roles=("billing",))
    assert asyncio.run(require_role("admin", "billing")(principal)) is principal
    with pytest.raises(PermissionDenied) as refused:
        asyncio.run(require_role("admin")(principal))
    assert refused.value.code == "missing_role"

"""Budgets, cost and GPU time across processes: two ``headwater api`` replicas (real OS
processes, deploy/split.py) share one Redis (deploy/redis) and one real vLLM server.

50 concurrent requests, spread over both replicas, against a department budget that fits
10 worst cases: 10 run, 40 are refused with 429 ``budget_exceeded`` in OpenAI's
``insufficient_quota`` shape, nothing overshoots, and what the budget counted equals the
tokens vLLM reported. The usage report (either replica) gives cost and GPU-seconds per
department that add up to the audit records.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from acl.models import Principal
from api.audit import AuditRecord
from api.budgets import BudgetGuard, worst_prompt_tokens
from api.cost import PriceTable, as_currency, to_nanos
from core.kafka.follower import read_to_end
from core.redis_store import open_shared_store
from core.settings import BudgetRule, ModelPrice
from deploy.process import StackError
from deploy.split import SplitDeployment, qdrant_binary
from deploy.stack import StackPaths
from inference.tokens import ModelTokenizer
from tests.conftest import TINY_MODEL_NAME
from tests.e2e.conftest import auth
from tests.qdrant_server import missing_binary_reason

pytestmark = pytest.mark.e2e

TENANT = f"budget-{uuid.uuid4().hex[:6]}"
CACHED_TENANT = f"cached-{uuid.uuid4().hex[:6]}"  # the answer cache on; no budget
HR, BILLING, CACHED = "budget-hr-key", "budget-billing-key", "cached-key"
KEYS = [
    {"key": HR, "tenant": TENANT, "user_id": "hanna@x.com", "department": "hr"},
    {"key": BILLING, "tenant": TENANT, "user_id": "cfo@x.com", "roles": ["billing"]},
    {"key": CACHED, "tenant": CACHED_TENANT, "user_id": "carl@x.com", "department": "ops"},
]
PRICE = ModelPrice(prompt_per_mtok=150, completion_per_mtok=600)
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
MAX_TOKENS = 48
MODEL = TINY_MODEL_NAME  # always answers with exactly max_tokens tokens


@dataclass
class Replicas:
    urls: tuple[str, str]
    redis_url: str
    kafka_bootstrap: str
    audit_topic: str
    worst_tokens: int
    slack_tokens: int  # what one answer's settlement frees (its worst case minus its use)
    rule: BudgetRule


def _calibrated(llm_url: str) -> tuple[int, int, int]:
    """The template allowance that makes the worst case of ``MESSAGES`` what vLLM counts
    (so a settlement frees nothing and the count of answers is exact whatever the
    timing), that worst case, and the slack left (0 unless the template adds < 8)."""
    answer = httpx.post(
        f"{llm_url}/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 1},
        timeout=120,
    )
    answer.raise_for_status()
    prompt = answer.json()["usage"]["prompt_tokens"]
    tokenizer = ModelTokenizer(StackPaths.default().models_dir / MODEL)
    bare = worst_prompt_tokens(tokenizer, MESSAGES, template_tokens=0)
    template = max(0, prompt - bare)
    worst = bare + template + MAX_TOKENS
    return template, worst, worst - (prompt + MAX_TOKENS)


@pytest.fixture(scope="module")
def replicas(
    kafka_bootstrap: str,
    llm_large_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Replicas]:
    missing = missing_binary_reason()
    if missing is not None:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("budgets")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"keys": KEYS}))
    template, worst, slack = _calibrated(llm_large_url)
    rule = BudgetRule(
        tenant=TENANT, scope="department", name="hr", limit=10 * worst, period="month"
    )
    run = uuid.uuid4().hex[:8]
    env = {
        "HEADWATER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HEADWATER_AUDIT_TOPIC": f"budgets-{run}.audit",
        "HEADWATER_DOCUMENTS_TOPIC": f"budgets-{run}.documents",
        "HEADWATER_DLQ_TOPIC": f"budgets-{run}.documents.dlq",
        "HEADWATER_PRINCIPALS_TOPIC": f"budgets-{run}.principals",
        "HEADWATER_KEYS_TOPIC": f"budgets-{run}.keys",
        "HEADWATER_CONSUMER_GROUP": f"budgets-{run}",
        "HEADWATER_API_KEYS_FILE": str(keys),
        "HEADWATER_DATA_DIR": str(root / "data"),
        "HEADWATER_LLM_SMALL_URL": llm_large_url,
        "HEADWATER_LLM_SMALL_MODEL": MODEL,
        "HEADWATER_LLM_SMALL_TOKENIZER": str(StackPaths.default().models_dir / MODEL),
        "HEADWATER_RATE_LIMIT_RPS": "0",  # 50 at once from one key: the budget decides
        "HEADWATER_REDIS_URL": redis_url,
        "HEADWATER_BUDGETS": json.dumps([rule.model_dump()]),
        "HEADWATER_BUDGET_TEMPLATE_TOKENS": str(template),
        "HEADWATER_MODEL_PRICES": json.dumps({MODEL: PRICE.model_dump()}),
        "HEADWATER_COST_CURRENCY": "EUR",
        "HEADWATER_ANSWER_CACHE_TENANT_POLICIES": json.dumps({CACHED_TENANT: "exact"}),
    }
    split = SplitDeployment(root, env=env)
    try:
        split.start_qdrant(qdrant_binary())
        # One after the other: the first creates the collection on the empty server.
        (first,) = split.start_apis(1)
        split.wait_ready(300)
        (second,) = split.start_apis(1)
        split.wait_ready(300)
        yield Replicas(
            (first, second),
            redis_url,
            kafka_bootstrap,
            env["HEADWATER_AUDIT_TOPIC"],
            worst,
            slack,
            rule,
        )
    except StackError as exc:
        pytest.fail(f"the API replicas did not start: {exc}")
    finally:
        if request.session.testsfailed:
            print(f"\n{split.log_tails(60)}")  # noqa: T201 - shown by pytest on failure
        split.stop()


async def _ask_all(urls: tuple[str, str], count: int) -> list[httpx.Response]:
    body: dict[str, Any] = {
        "model": "auto",
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "headwater": {"retrieval": {"enabled": False}},
    }
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=count)) as http:
        return await asyncio.gather(
            *(
                http.post(f"{urls[i % 2]}/v1/chat/completions", json=body, headers=auth(HR))
                for i in range(count)
            )
        )


async def test_fifty_concurrent_requests_on_two_replicas_hold_the_budget(
    replicas: Replicas,
) -> None:
    responses = await _ask_all(replicas.urls, 50)
    answered = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(answered) + len(refused) == 50, [r.text for r in responses][:3]
    # Exactly ten fit, whatever the timing: the worst case is what vLLM counts (calibrated),
    # so a settlement frees too little for an eleventh.
    assert 10 * replicas.slack_tokens < replicas.worst_tokens
    assert len(answered) == 10
    error = refused[0].json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "insufficient_quota",
        "budget_exceeded",
        None,
    )
    assert "department hr budget" in error["message"]
    # 1 s while answers in flight hold the budget; once all settled, the month's end.
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)

    reported = [r.json()["usage"] for r in answered]
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in reported)
    assert all(
        u["prompt_tokens"] + u["completion_tokens"] <= replicas.worst_tokens for u in reported
    )
    assert used <= replicas.rule.limit  # none overshoots
    async with open_shared_store(replicas.redis_url) as store:
        guard = BudgetGuard([replicas.rule], store, PriceTable({}), reservation_ttl_s=60)
        principal = Principal(tenant=TENANT, user_id="hanna@x.com", department="hr")
        totals = await store.totals(guard.counters(principal)[0].key)
    assert (totals.used, totals.reserved) == (used, 0)  # settled to what vLLM reported


def test_usage_reports_cost_and_gpu_seconds_that_add_up_to_the_audit_records(
    replicas: Replicas,
) -> None:
    with httpx.Client(timeout=60) as http:
        report = http.get(
            f"{replicas.urls[1]}/v1/usage", params={"group_by": "department"}, headers=auth(BILLING)
        )
    assert report.status_code == 200, report.text
    body = report.json()
    records = [
        AuditRecord.model_validate_json(record.value)
        for record in read_to_end(replicas.kafka_bootstrap, topic=replicas.audit_topic)
        if record.value
    ]
    hr = [r for r in records if r.tenant == TENANT and r.department == "hr"]
    assert len(hr) == 10  # the refused requests were never answered, so never audited
    price = PriceTable({MODEL: PRICE})
    for record in hr:
        expected = price.cost_nanos(
            MODEL,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )
        assert to_nanos(record.cost) == expected > 0
        assert 0 < record.gpu_seconds <= record.latency_ms / 1000
    (row,) = [r for r in body["data"] if r["department"] == "hr"]
    assert row["requests"] == 10
    assert row["total_tokens"] == sum(r.prompt_tokens + r.completion_tokens for r in hr)
    assert row["cost"] == as_currency(sum(to_nanos(r.cost) for r in hr))
    assert row["gpu_seconds"] == round(sum(round(r.gpu_seconds * 1e6) for r in hr) / 1e6, 6)
    assert body["currency"] == "EUR"


def _sse_text(body: str) -> str:
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def test_an_answer_cached_by_one_replica_is_a_hit_on_the_other_streamed_and_audited(
    replicas: Replicas,
) -> None:
    question = {
        "model": "auto",
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 24,
        "temperature": 0,
        "headwater": {"retrieval": {"enabled": False}},
    }
    one, two = replicas.urls
    with httpx.Client(timeout=120) as http:

        def ask(url: str, **extra: Any) -> httpx.Response:
            headers = {**auth(CACHED), **extra.pop("headers", {})}
            body = {**question, **extra}
            response = http.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
            return response

        made = ask(one).json()
        hit = ask(two).json()  # the other process: the entry is in the shared store
        streamed = ask(one, stream=True, stream_options={"include_usage": True}).text
        fresh = ask(two, headers={"Cache-Control": "no-cache"}).json()
        other = ask(two, max_tokens=23).json()  # other parameters: another answer

    assert made["headwater"]["cache"] == {"outcome": "miss"}
    assert made["usage"]["completion_tokens"] > 0
    answer = made["choices"][0]["message"]["content"]
    assert hit["headwater"]["cache"] == {
        "outcome": "hit",
        "saved_tokens": made["usage"]["total_tokens"],
    }
    assert hit["choices"][0]["message"]["content"] == answer
    assert hit["usage"]["total_tokens"] == 0  # no model was called
    assert _sse_text(streamed) == answer and '"outcome":"hit"' in streamed
    assert fresh["headwater"]["cache"] == {"outcome": "bypass"} and fresh["usage"]["total_tokens"]
    assert other["headwater"]["cache"] == {"outcome": "miss"}

    def audited() -> list[AuditRecord]:
        records = (
            AuditRecord.model_validate_json(record.value)
            for record in read_to_end(replicas.kafka_bootstrap, topic=replicas.audit_topic)
            if record.value
        )
        return [r for r in records if r.tenant == CACHED_TENANT]

    records = audited()
    for _ in range(50):  # the replicas queue their records for up to 20 ms
        if len(records) == 5:
            break
        time.sleep(0.1)
        records = audited()
    outcomes = sorted(r.cache or "" for r in records)
    assert outcomes == ["bypass", "hit", "hit", "miss", "miss"]
    for record in records:
        spent = record.prompt_tokens + record.completion_tokens
        assert (spent == 0) == (record.cache == "hit"), record
        assert (record.cost == 0) == (record.cache == "hit"), record

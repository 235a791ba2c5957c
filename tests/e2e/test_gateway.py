"""The inference gateway end to end: the official ``openai`` client against Headwater over
real HTTP, in front of two real vLLM CPU servers (small: SmolLM2-135M, large: tiny-llama),
plus a third, killable one for failover.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.settings import Settings
from deploy.process import free_port
from deploy.stack import LLM_MODEL_NAME, StackPaths, llm_process
from headwater.processes import build_app
from tests.conftest import TINY_MODEL_NAME
from tests.e2e.conftest import eventually, serving

pytestmark = pytest.mark.e2e

ALICE, BOB, METER, BILLING = "gw-alice", "gw-bob", "gw-meter", "gw-billing"
GLOBEX, INITECH = "gw-globex", "gw-initech"
KEYS = [
    {"key": ALICE, "tenant": "acme", "user_id": "alice@acme.com", "department": "hr"},
    {"key": BOB, "tenant": "acme", "user_id": "bob@acme.com", "department": "eng"},
    {"key": METER, "tenant": "acme", "user_id": "meg@acme.com", "department": "finance"},
    {"key": BILLING, "tenant": "acme", "user_id": "cfo@acme.com", "roles": ["billing"]},
    {"key": GLOBEX, "tenant": "globex", "user_id": "gina@globex.com"},
    {"key": INITECH, "tenant": "initech", "user_id": "ian@initech.com"},
]
NO_RETRIEVAL = {"headwater": {"retrieval": {"enabled": False}}}
PII_LINE = "Write to jane.doe@example.com or call +1 415 555 0100 today"


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "keys.json"
    path.write_text(json.dumps({"keys": KEYS}))
    return path


def _settings(
    kafka_bootstrap: str, keys_file: Path, tmp: Path, *, small: str, large: str, **extra: Any
) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        llm_small_url=small,
        llm_large_url=large,
        llm_large_model=TINY_MODEL_NAME,
        data_dir=tmp / "data",
        api_keys_file=keys_file,
        consumer_group=f"gw-{uuid.uuid4().hex[:8]}",
        firewall_tenant_policies={"globex": "allow", "initech": "block"},
        llm_health_interval_s=1.0,
        **{"rate_limit_rps": 0, **extra},
    )


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str,
    llm_url: str,
    llm_large_url: str,
    keys_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    settings = _settings(
        kafka_bootstrap,
        keys_file,
        tmp_path_factory.mktemp("gw-main"),
        small=llm_url,
        large=llm_large_url,
        router_target_large_share=0.5,
    )
    with serving(build_app(settings, run_ingest=False)) as url:
        yield url


@pytest.fixture(scope="module")
def gateway_settings(
    kafka_bootstrap: str,
    llm_url: str,
    llm_large_url: str,
    keys_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    """Settings for an extra gateway over the same two servers, with ``extra`` changed."""

    def make(name: str, **extra: Any) -> Settings:
        return _settings(
            kafka_bootstrap,
            keys_file,
            tmp_path_factory.mktemp(name),
            small=llm_url,
            large=llm_large_url,
            **extra,
        )

    return make


def _client(url: str, key: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --- the OpenAI surface -----------------------------------------------------------------


def test_sync_completion_carries_usage_and_the_route(gateway: str) -> None:
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="small",
        messages=_ask("Name a colour."),
        max_tokens=8,
        temperature=0,
        extra_body=NO_RETRIEVAL,
    )
    completion = raw.parse()
    assert completion.model == LLM_MODEL_NAME
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8
    assert raw.headers["x-headwater-route"].startswith(f"small; model={LLM_MODEL_NAME}")
    assert raw.headers["x-request-id"]


def test_seed_and_sampling_parameters_reach_the_model(gateway: str) -> None:
    client = _client(gateway)

    def sample(seed: int) -> str:
        completion = client.chat.completions.create(
            model="large",
            messages=_ask("Say anything."),
            max_tokens=12,
            temperature=1.0,
            top_p=0.9,
            seed=seed,
            extra_body=NO_RETRIEVAL,
        )
        return completion.choices[0].message.content or ""

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_stop_sequences_end_the_answer(gateway: str) -> None:
    client = _client(gateway)
    free = client.chat.completions.create(
        model="large", messages=_ask("go"), max_tokens=24, temperature=0, extra_body=NO_RETRIEVAL
    )
    text = free.choices[0].message.content or ""
    stop = text[6:9]  # the tiny model is deterministic at temperature 0
    assert stop.strip(), text
    stopped = client.chat.completions.create(
        model="large",
        messages=_ask("go"),
        max_tokens=24,
        temperature=0,
        stop=[stop],
        extra_body=NO_RETRIEVAL,
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in (stopped.choices[0].message.content or "")


async def test_async_stream_ends_with_usage_when_asked(gateway: str) -> None:
    client = openai.AsyncOpenAI(base_url=gateway, api_key=ALICE, max_retries=0)
    stream = await client.chat.completions.create(
        model="large",
        messages=_ask("Count."),
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=NO_RETRIEVAL,
    )
    chunks = [chunk async for chunk in stream]
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert content and chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10
    await client.close()


def test_models_lists_the_aliases_and_the_served_models(gateway: str) -> None:
    ids = {model.id for model in _client(gateway).models.list()}
    assert {"auto", "small", "large", LLM_MODEL_NAME, TINY_MODEL_NAME} <= ids


def test_errors_have_openai_s_shape_and_status(gateway: str) -> None:
    client = _client(gateway)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=_ask("hi"))
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="small", messages=_ask("hi"), n=2)
    assert many.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, key="not-a-key").models.list()


# --- routing ---------------------------------------------------------------------------


def test_auto_routes_by_the_learned_score_and_records_the_decision(
    gateway: str, spans: InMemorySpanExporter
) -> None:
    """Each auto decision goes large exactly when its score reaches the threshold it
    reports, the learned scorer saw the question's embedding (made once: retrieval is off
    here), and the decision is in the header, the body and the route span. Which tier a
    given prompt deserves is the router's quality, judged on held-out data
    (tests/integration/test_router_quality.py), not asserted here."""
    client = _client(gateway)
    hard = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=_ask(
            "Compare the two pension plans step by step, then write a Python function that "
            "computes which one pays more after 20 years, and explain the trade-offs."
        ),
        max_tokens=2,
        extra_body=NO_RETRIEVAL,
    )
    easy = client.chat.completions.with_raw_response.create(
        model="auto", messages=_ask("hi there!"), max_tokens=2, extra_body=NO_RETRIEVAL
    )
    for raw in (hard, easy):
        header = raw.headers["x-headwater-route"]
        assert re.search(r"score=\d\.\d+; threshold=\d\.\d+", header), header
        route = raw.parse().model_extra["headwater"]["route"]  # type: ignore[index]
        assert header.startswith(f"{route['tier']};"), header
        if abs(route["score"] - route["threshold"]) > 1e-3:  # a tie may go either way
            expected = "large" if route["score"] > route["threshold"] else "small"
            assert route["tier"] == expected, route
    routes = [s for s in spans.get_finished_spans() if s.name == "route"]
    assert len(routes) >= 2 and all("headwater.route.score" in r.attributes for r in routes)
    assert all(r.attributes["headwater.route.feature.embedding_missing"] == 0 for r in routes)


# --- metering --------------------------------------------------------------------------


def test_usage_report_equals_the_tokens_vllm_reported(gateway: str) -> None:
    client = _client(gateway, key=METER)
    prompt = completion = 0
    for model, n in (("small", 3), ("large", 5), ("large", 7)):
        answer = client.chat.completions.create(
            model=model, messages=_ask(f"Say {n} words."), max_tokens=n, extra_body=NO_RETRIEVAL
        )
        assert answer.usage is not None
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens

    def finance() -> dict[str, Any]:
        response = httpx.get(
            f"{gateway}/usage",
            params={"group_by": "department"},
            headers={"Authorization": f"Bearer {BILLING}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        rows = [row for row in response.json()["data"] if row["department"] == "finance"]
        return rows[0] if rows else {}

    row = finance()
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    assert row["requests"] == 3
    forbidden = httpx.get(f"{gateway}/usage", headers={"Authorization": f"Bearer {METER}"})
    assert forbidden.status_code == 403


# --- the prompt firewall ---------------------------------------------------------------


def _prompt_tokens(gateway: str, key: str, text: str) -> int:
    answer = _client(gateway, key).chat.completions.create(
        model="small", messages=_ask(text), max_tokens=1, extra_body=NO_RETRIEVAL
    )
    assert answer.usage is not None
    return answer.usage.prompt_tokens


def test_pii_in_input_is_redacted_before_the_model_sees_it(
    gateway: str, spans: InMemorySpanExporter
) -> None:
    with_pii = "My card is 4111 1111 1111 1111 and my email is jane.doe@example.com, ok?"
    placeholders = "My card is [CREDIT_CARD] and my email is [EMAIL_ADDRESS], ok?"
    # vLLM counts the prompt it received: the same count as the placeholder text means
    # the model saw placeholders; the 'allow' tenant's count shows the test can tell.
    assert _prompt_tokens(gateway, ALICE, with_pii) == _prompt_tokens(gateway, ALICE, placeholders)
    assert _prompt_tokens(gateway, GLOBEX, with_pii) != _prompt_tokens(
        gateway, GLOBEX, placeholders
    )
    guards = [s for s in spans.get_finished_spans() if s.name == "guardrail input"]
    assert any(s.attributes.get("headwater.guardrail.action") == "redacted" for s in guards)
    exported = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    assert "jane.doe" not in exported and "4111" not in exported


def test_a_blocking_tenant_gets_a_400_naming_the_kinds(gateway: str) -> None:
    with pytest.raises(openai.BadRequestError) as blocked:
        _client(gateway, INITECH).chat.completions.create(
            model="small", messages=_ask("mail me at jane.doe@example.com"), max_tokens=1
        )
    assert blocked.value.code == "content_filter"
    assert "EMAIL_ADDRESS" in str(blocked.value) and "jane.doe" not in str(blocked.value)


def _forced_pii(gateway: str, key: str) -> tuple[str, int]:
    """Stream an answer that vLLM's structured output forces to contain PII."""
    stream = _client(gateway, key).chat.completions.create(
        model="small",
        messages=_ask("Repeat the contact line."),
        max_tokens=64,
        temperature=0,
        stream=True,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "contact", "schema": {"enum": [PII_LINE]}},
        },
        extra_body=NO_RETRIEVAL,
    )
    parts = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    return "".join(parts), len(parts)


def test_pii_split_across_stream_chunks_is_redacted(gateway: str) -> None:
    raw, _ = _forced_pii(gateway, GLOBEX)  # 'allow': what the model really said
    assert "jane.doe@example.com" in raw and "555 0100" in raw
    redacted, chunks = _forced_pii(gateway, ALICE)
    assert chunks > 1
    assert "jane.doe" not in redacted and "example.com" not in redacted
    assert "555 0100" not in redacted and "[EMAIL_ADDRESS]" in redacted
    assert "[PHONE_NUMBER]" in redacted and redacted.startswith('"Write to ')


# --- cancellation ----------------------------------------------------------------------


def _vllm_metric(llm_url: str, name: str, **labels: str) -> float:
    """The sum of a vLLM metric's samples that carry ``labels``."""
    text = httpx.get(llm_url.removesuffix("/v1") + "/metrics", timeout=10).text
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (line.startswith(name + "{") or line.startswith(name + " "))
        and all(label in line for label in wanted)
    )


def _finished(llm_url: str) -> float:
    """Requests vLLM finished (at a stop or at max_tokens); an aborted one is not counted."""
    return _vllm_metric(llm_url, "vllm:request_success_total", finished_reason="stop") + (
        _vllm_metric(llm_url, "vllm:request_success_total", finished_reason="length")
    )


def test_a_client_that_leaves_cancels_the_upstream_request(gateway: str, llm_url: str) -> None:
    # SmolLM2 (not the tiny model: warm, it can finish thousands of tokens before a
    # disconnect could reach it) takes ~20 s for this answer and, greedy, never stops early.
    long_answer = {
        "model": "small",
        "messages": _ask("Write a long essay on the history of Rome, at least 3000 words."),
        "max_tokens": 1000,
        "temperature": 0,
        **NO_RETRIEVAL,
    }
    headers = {"Authorization": f"Bearer {ALICE}"}
    for stream in (True, False):
        before = _finished(llm_url)
        # Non-streamed: the client gives up after 1 s.
        with httpx.Client(timeout=httpx.Timeout(120, read=60.0 if stream else 1.0)) as http:
            if stream:
                with http.stream(
                    "POST",
                    f"{gateway}/chat/completions",
                    json={**long_answer, "stream": True},
                    headers=headers,
                ) as response:
                    assert response.status_code == 200
                    for _ in zip(range(3), response.iter_lines(), strict=False):
                        pass
            else:
                with pytest.raises(httpx.ReadTimeout):
                    http.post(f"{gateway}/chat/completions", json=long_answer, headers=headers)
        # Aborted, the request leaves vLLM at once; run to the end, it would take ~20 s.
        eventually(
            lambda: _vllm_metric(llm_url, "vllm:num_requests_running") == 0,
            f"vLLM to abort the request the client left (stream={stream})",
            timeout_s=10,
        )
        assert _finished(llm_url) == before, f"vLLM finished the request (stream={stream})"


# --- overload --------------------------------------------------------------------------


def test_a_burst_over_the_key_s_rate_gets_429_with_retry_after(
    gateway_settings: Callable[..., Settings],
) -> None:
    settings = gateway_settings("gw-rate", rate_limit_rps=0.2, rate_limit_burst=2)
    with serving(build_app(settings, run_ingest=False)) as url:
        client = _client(url)
        for _ in range(2):
            client.chat.completions.create(
                model="large", messages=_ask("hi"), max_tokens=1, extra_body=NO_RETRIEVAL
            )
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(
                model="large", messages=_ask("hi"), max_tokens=1, extra_body=NO_RETRIEVAL
            )
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert limited.value.code == "rate_limit_exceeded"
        _client(url, BOB).models.list()  # other keys are unaffected


def test_a_burst_beyond_capacity_gets_503_with_retry_after_never_a_long_queue(
    gateway_settings: Callable[..., Settings],
) -> None:
    settings = gateway_settings("gw-busy", llm_max_inflight_per_backend=1, llm_queue_max=1)
    body = {"model": "large", "messages": _ask("go"), "max_tokens": 400, **NO_RETRIEVAL}

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{url}/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {ALICE}"},
                    )
                    for _ in range(5)
                )
            )

    with serving(build_app(settings, run_ingest=False)) as url:
        started = time.monotonic()
        responses = asyncio.run(burst(url))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 503, 503, 503], [r.text for r in responses]
        for refused in (r for r in responses if r.status_code == 503):
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded"
        assert time.monotonic() - started < 60


# --- failover --------------------------------------------------------------------------


@pytest.fixture
def killable_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A third vLLM server (tiny-llama) that a test may kill -9."""
    root = tmp_path_factory.mktemp("llm-killable")
    port = free_port()
    server = llm_process(
        model_dir=StackPaths.default().models_dir / TINY_MODEL_NAME,
        served_name=TINY_MODEL_NAME,
        port=port,
        log_path=root / "llm.log",
    )
    server.start()
    try:
        server.wait_ready(600)
        assert server.pid is not None
        yield f"http://127.0.0.1:{port}/v1", server.pid
    finally:
        server.stop()


def test_killing_the_large_server_mid_run_falls_back_to_small_without_errors(
    kafka_bootstrap: str,
    llm_url: str,
    killable_llm: tuple[str, int],
    keys_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    large_url, pid = killable_llm
    settings = _settings(
        kafka_bootstrap,
        keys_file,
        tmp_path_factory.mktemp("gw-failover"),
        small=llm_url,
        large=large_url,
    )
    served: list[str] = []
    errors: list[str] = []
    done = threading.Event()

    def run(url: str) -> None:
        client = _client(url)
        while not done.is_set():
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="large", messages=_ask("hi"), max_tokens=8, extra_body=NO_RETRIEVAL
                )
                served.append(raw.parse().model)
            except openai.APIError as exc:
                errors.append(repr(exc))

    with serving(build_app(settings, run_ingest=False)) as url:
        worker = threading.Thread(target=run, args=(url,))
        worker.start()
        eventually(lambda: len(served) >= 3, "answers from the large server", timeout_s=60)
        os.killpg(pid, signal.SIGKILL)
        killed_at = len(served)
        eventually(lambda: len(served) >= killed_at + 5, "answers after the kill", timeout_s=60)
        done.set()
        worker.join(timeout=60)
    assert not errors, errors
    assert set(served[:3]) == {TINY_MODEL_NAME}
    assert set(served[killed_at + 1 :]) == {LLM_MODEL_NAME}

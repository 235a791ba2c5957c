"""bench.gateway --mock's pure parts: the mock's answers and delays, the bounds a
sustained level must meet, when the climb stops, the added latency, the headline."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bench.gateway_mock import (
    Level,
    MockTarget,
    added_latency,
    best_sustained,
    keep_climbing,
    litellm_config,
    summarise,
)
from bench.mock_openai import completion_body, delay_s, response


def _level(concurrency: int, *, ok: int, errors: int = 0, p99_s: float = 0.1) -> Level:
    level = Level(concurrency, ok=ok, errors=errors, elapsed_s=1.0)
    slow = max(1, ok // 20)  # 5% of the answers take p99_s: it is the p99
    level.latencies = [0.01] * (ok - slow) + [p99_s] * slow if ok else []
    return level


def test_the_model_name_sets_the_delay() -> None:
    assert delay_s("mock-20ms") == 0.02
    assert delay_s("mock-0ms") == 0.0
    assert delay_s("small") == 0.0


def test_the_mock_answers_with_the_asked_model_and_fixed_completion_tokens() -> None:
    request = {"model": "mock-0ms", "messages": [{"role": "user", "content": "x" * 40}]}
    kind, body = completion_body(request, completion_tokens=16)
    answer = json.loads(body)
    assert kind == b"application/json"
    assert answer["model"] == "mock-0ms"
    assert answer["usage"] == {"prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26}
    assert answer["choices"][0]["finish_reason"] == "length"
    raw = response(200, kind, body)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"content-length: {len(body)}\r\n\r\n".encode() + body in raw


def test_a_streamed_request_gets_content_usage_and_done() -> None:
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    kind, body = completion_body(request, completion_tokens=4)
    events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]
    assert kind == b"text/event-stream"
    assert events[-1] == "[DONE]"
    first, last = json.loads(events[0]), json.loads(events[1])
    assert first["choices"][0]["delta"]["content"] == "ok " * 4
    assert last["usage"]["completion_tokens"] == 4


def test_a_level_passes_only_under_one_second_p99_and_a_tenth_percent_errors() -> None:
    assert _level(8, ok=2000).passes()
    assert not _level(8, ok=2000, p99_s=1.0).passes()
    assert not _level(8, ok=999, errors=1).passes()  # exactly 0.1%
    assert _level(8, ok=1999, errors=1).passes()  # 0.05%
    assert not _level(8, ok=0).passes()


def test_the_best_level_within_the_bounds_is_reported() -> None:
    levels = [_level(8, ok=500), _level(16, ok=900), _level(32, ok=1200, p99_s=2.0)]
    best = best_sustained(levels)
    assert best is not None and best.concurrency == 16
    assert best_sustained([_level(8, ok=10, p99_s=3.0)]) is None


def test_the_climb_stops_at_a_failing_level_or_one_that_adds_little() -> None:
    assert keep_climbing([_level(8, ok=500)])
    assert keep_climbing([_level(8, ok=500), _level(16, ok=600)])
    assert not keep_climbing([_level(8, ok=500), _level(16, ok=510)])
    assert not keep_climbing([_level(8, ok=500), _level(16, ok=900, p99_s=1.5)])


def test_added_latency_is_each_proxy_minus_the_direct_calls() -> None:
    added = added_latency({"direct": [0.001] * 100, "headwater": [0.0015] * 100})
    assert added["headwater"]["added_p99_ms"] == 0.5
    assert added["headwater"]["added_p50_ms"] == 0.5
    assert "added_p99_ms" not in added["direct"]


def test_the_headline_takes_medians_over_runs_and_divides_by_cores() -> None:
    def run(ours: float, theirs: float | None, added: float) -> dict[str, object]:
        return {
            "c1": {"headwater": {"added_p99_ms": added, "added_p50_ms": added / 2}},
            "sustained": {"headwater": {"rps": ours}, "litellm": {"rps": theirs}},
        }

    runs = [run(1000, 100, 0.8), run(1200, 80, 0.9), run(1100, None, 0.7)]
    headline = summarise(runs, cores=2)
    assert headline["added_p99_ms_c1"] == 0.8
    assert headline["rps_per_core"] == 550.0
    assert headline["litellm_rps_per_core"] == 45.0
    assert headline["rps_per_core_vs_litellm"] == round(550 / 45, 2)


def test_headwater_requests_carry_a_unique_prompt_and_no_retrieval() -> None:
    target = MockTarget("headwater", "http://x/v1/chat/completions", {}, "small", headwater=True)
    first, second = (json.loads(target.body(n, max_tokens=16)) for n in (1, 2))
    assert first["messages"] != second["messages"]  # every request misses the cache
    assert first["headwater"] == {"retrieval": {"enabled": False}}
    direct = MockTarget("direct", "http://x/v1/chat/completions", {}, "mock-0ms")
    assert "headwater" not in json.loads(direct.body(1, max_tokens=16))


def test_litellm_is_configured_for_both_mocks(tmp_path: Path) -> None:
    path = litellm_config(tmp_path / "litellm.yaml", "http://127.0.0.1:9/v1")
    config = yaml.safe_load(path.read_text())
    names = [m["model_name"] for m in config["model_list"]]
    assert names == ["mock-0ms", "mock-20ms"]
    assert all(
        m["litellm_params"]["api_base"] == "http://127.0.0.1:9/v1" for m in config["model_list"]
    )

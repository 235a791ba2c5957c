"""Gateway capacity against a mock upstream, beside LiteLLM's proxy (issue 17, item 4).

    python -m bench.gateway --mock [--runs 3]

The published method of the open gateway benchmarks: a mock OpenAI upstream
(``bench.mock_openai``) so the model costs nothing and only the gateway shows.

- added latency: a zero-delay mock; sequential requests (concurrency 1) to the mock
  directly, to Headwater and to LiteLLM, interleaved (each goes first in turn);
  ``added_p99_ms_c1`` = p99(Headwater) - p99(direct), likewise p50 and LiteLLM's.
- sustained throughput: a mock that answers after 20 ms; closed-loop clients at rising
  concurrency (``LADDER``), each level for ``--level-s`` seconds; the best requests/s of
  a level whose p99 is under 1 s with under 0.1% errors (the climb stops at the first
  level that fails either, or adds under 3%). Per core: the gateway (and LiteLLM, in its
  own blocks) runs pinned to ``--gateway-cpus`` CPUs (taskset), so requests/s per core =
  requests/s / that many CPUs.

Headwater runs as ``headwater serve`` with everything on the chat path on: auth (a dev
API key), the PII firewall (redact, input and output), routing (``small`` -> the zero
mock, ``large`` -> the 20 ms mock), tracing, metrics, the audit record (queued for a
private Kafka broker), budgets (tenant, department and key: three reservations and
settlements per request in a private Redis, limits too high to refuse) and the exact
answer cache (a lookup and a store per request: every prompt carries a request number,
so every request misses, as new questions do, and reaches the upstream). Retrieval is off
(a feature, not a proxy cost; as in the overhead bench). The per-key rate limit is off.

LiteLLM: the bench's setup creates ``.cache/bench/litellm-venv`` and installs
``litellm[proxy]`` from PyPI into it when missing, then runs ``litellm --config`` (no
database, one worker: its lightest configuration; a master key, which 1.108 requires)
against the same mock,
with ``LITELLM_LOCAL_MODEL_COST_MAP`` set (no network at start). If it cannot be set up or
started, the output says why in ``litellm_error`` and keeps Headwater's figures.

The mock, Redis, Kafka and this client share the remaining CPUs. Progress to stderr;
stdout gets one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import percentile, started, workspace
from deploy.process import ManagedProcess, StackError, free_port, http_ok
from deploy.redis import redis_process
from deploy.stack import REPO, headwater_process, kafka_process

LITELLM_VENV = REPO / ".cache/bench/litellm-venv"
LITELLM_MASTER_KEY = f"sk-bench-{secrets.token_hex(32)}"  # a new one per run
LADDER = (8, 16, 32, 64, 128, 256, 512)
P99_LIMIT_S = 1.0
ERROR_LIMIT = 0.001
TARGETS = {"added_p99_ms_c1": 1.0, "rps_per_core_vs_litellm": 10.0}
PROMPTS = [
    "What is the capital of France?",
    "Summarise the travel policy in one sentence.",
    "How do I request a new laptop?",
    "When does the quarterly review start?",
]


def say(message: str) -> None:
    print(f"[bench.gateway --mock] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class MockTarget:
    """One endpoint; ``body(n)`` is request ``n``'s body (a unique prompt per request)."""

    name: str
    url: str
    headers: dict[str, str]
    model: str
    headwater: bool = False

    def body(self, n: int, *, max_tokens: int) -> bytes:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"{PROMPTS[n % len(PROMPTS)]} (#{n})"}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if self.headwater:
            payload["headwater"] = {"retrieval": {"enabled": False}}
        return json.dumps(payload, separators=(",", ":")).encode()


@dataclass
class Level:
    """What one closed-loop level measured."""

    concurrency: int
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def error_rate(self) -> float:
        total = self.ok + self.errors
        return self.errors / total if total else 0.0

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies, 0.99) if self.latencies else float("inf")

    def passes(self) -> bool:
        """Within the published bounds: p99 under 1 s and under 0.1% errors."""
        return self.ok > 0 and self.p99_s < P99_LIMIT_S and self.error_rate < ERROR_LIMIT

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(self.latencies, 0.5) * 1000, 2) if self.latencies else None,
            "p99_ms": round(self.p99_s * 1000, 2) if self.latencies else None,
            "requests": self.ok + self.errors,
            "error_rate": round(self.error_rate, 5),
            "passes": self.passes(),
            **({"first_error": self.first_error} if self.first_error else {}),
        }


def best_sustained(levels: list[Level]) -> Level | None:
    """The level with the most requests/s among those within the bounds."""
    passing = [level for level in levels if level.passes()]
    return max(passing, key=lambda level: level.rps) if passing else None


def keep_climbing(levels: list[Level], *, min_gain: float = 0.03) -> bool:
    """Whether to try the next concurrency: the last level passed and added at least
    ``min_gain`` over the best before it."""
    last = levels[-1]
    if not last.passes():
        return False
    before = [level.rps for level in levels[:-1] if level.passes()]
    return not before or last.rps >= max(before) * (1 + min_gain)


async def one_request(
    client: aiohttp.ClientSession, target: MockTarget, n: int, max_tokens: int
) -> tuple[float, str | None]:
    """Seconds to the whole answer, and an error description (None if it succeeded)."""
    began = time.perf_counter()
    try:
        async with client.post(
            target.url, data=target.body(n, max_tokens=max_tokens), headers=target.headers
        ) as reply:
            raw = await reply.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return time.perf_counter() - began, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - began
    if reply.status != 200:
        return elapsed, f"HTTP {reply.status}: {raw[:300].decode(errors='replace')}"
    return elapsed, None


async def run_level(
    client: aiohttp.ClientSession,
    target: MockTarget,
    *,
    concurrency: int,
    seconds: float,
    max_tokens: int,
    numbers: Iterator[int],
) -> Level:
    """``concurrency`` closed-loop clients for ``seconds``."""
    level = Level(concurrency)
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            elapsed, error = await one_request(client, target, next(numbers), max_tokens)
            if error is None:
                level.ok += 1
                level.latencies.append(elapsed)
            else:
                level.errors += 1
                level.first_error = level.first_error or error

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    level.elapsed_s = time.perf_counter() - began
    return level


async def sustained(
    client: aiohttp.ClientSession,
    target: MockTarget,
    *,
    seconds: float,
    max_tokens: int,
    numbers: Iterator[int],
) -> list[Level]:
    """Climb ``LADDER`` until a level fails the bounds or stops adding throughput."""
    levels: list[Level] = []
    for concurrency in LADDER:
        level = await run_level(
            client,
            target,
            concurrency=concurrency,
            seconds=seconds,
            max_tokens=max_tokens,
            numbers=numbers,
        )
        levels.append(level)
        say(f"{target.name} c{concurrency}: {json.dumps(level.summary())}")
        if not keep_climbing(levels):
            break
    return levels


async def sequential(
    client: aiohttp.ClientSession,
    targets: list[MockTarget],
    *,
    pairs: int,
    max_tokens: int,
    numbers: Iterator[int],
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """``pairs`` rounds of one request to each target; each target goes first in turn.
    A failed request is no sample; each target's failures go under ``"errors"``."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    errors: dict[str, list[str]] = {}
    for n in range(pairs):
        shift = n % len(targets)
        for target in [*targets[shift:], *targets[:shift]]:
            elapsed, error = await one_request(client, target, next(numbers), max_tokens)
            if error is None:
                samples[target.name].append(elapsed)
            else:
                errors.setdefault(target.name, []).append(error)
    for name, failed in errors.items():
        say(f"{name}: {len(failed)} failed requests at concurrency 1, first: {failed[0]}")
    kept = {name: values for name, values in samples.items() if values}
    return kept, {name: len(failed) for name, failed in errors.items()}


def added_latency(samples: dict[str, list[float]]) -> dict[str, Any]:
    """p50/p99 per target, and each proxy's added p50/p99 over the direct calls (ms)."""
    ms: dict[str, Any] = {
        name: {
            "p50_ms": round(percentile(values, 0.5) * 1000, 3),
            "p99_ms": round(percentile(values, 0.99) * 1000, 3),
        }
        for name, values in samples.items()
    }
    for name in samples:
        if name != "direct" and "direct" in ms:
            for q in ("p50", "p99"):
                ms[name][f"added_{q}_ms"] = round(ms[name][f"{q}_ms"] - ms["direct"][f"{q}_ms"], 3)
    return ms


def ensure_litellm(venv: Path) -> tuple[Path | None, str | None]:
    """The ``litellm`` command of ``venv``, creating the venv and installing
    ``litellm[proxy]`` from PyPI if missing; (None, why) if that fails."""
    binary = venv / "bin/litellm"
    if binary.exists():
        return binary, None
    say(f"setting up LiteLLM in {venv} (pip install 'litellm[proxy]')")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin/pip"), "install", "-q", "litellm[proxy]"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1200)
        if done.returncode != 0:
            return None, f"{' '.join(step)} failed: {(done.stderr or done.stdout)[-1500:]}"
    return (binary, None) if binary.exists() else (None, f"no {binary} after install")


def litellm_version(venv: Path) -> str | None:
    done = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.metadata as m;print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def litellm_config(path: Path, mock_url: str) -> Path:
    """LiteLLM's proxy config: the two mock models, no database, no callbacks."""
    models = [
        f"  - model_name: {name}\n"
        f"    litellm_params:\n"
        f"      model: openai/{name}\n"
        f"      api_base: {mock_url}\n"
        f"      api_key: mock\n"
        for name in ("mock-0ms", "mock-20ms")
    ]
    path.write_text(
        "model_list:\n"
        + "".join(models)
        + "litellm_settings:\n  telemetry: false\n  set_verbose: false\n"
        # LiteLLM 1.108 refuses to start without a strong master key; without a
        # database it is checked against the config alone.
        + f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
    )
    return path


def litellm_process(
    binary: Path, config: Path, port: int, root: Path, cpus: list[int]
) -> ManagedProcess:
    return ManagedProcess(
        "litellm",
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        log_path=root / "litellm.log",
        ready=http_ok(f"http://127.0.0.1:{port}/health/liveliness"),
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"},
        cwd=root,
        cpus=cpus,
    )


def gateway_env(root: Path, *, bootstrap: str, mock_url: str, redis_url: str) -> dict[str, str]:
    """Headwater with the firewall, routing, audit, budgets and the exact cache on."""
    budgets = [
        {"tenant": "acme", "limit": 10**15},
        {"tenant": "acme", "scope": "department", "name": "*", "limit": 10**15},
        {"tenant": "acme", "scope": "key", "name": "*", "limit": 10**15},
    ]
    price = {"prompt_per_mtok": 0.1, "completion_per_mtok": 0.4}
    return {
        "HEADWATER_KAFKA_BOOTSTRAP": bootstrap,
        "HEADWATER_LLM_SMALL_URL": mock_url,
        "HEADWATER_LLM_SMALL_MODEL": "mock-0ms",
        "HEADWATER_LLM_LARGE_URL": mock_url,
        "HEADWATER_LLM_LARGE_MODEL": "mock-20ms",
        "HEADWATER_DATA_DIR": str(root / "data"),
        "HEADWATER_API_KEYS_FILE": str(REPO / "deploy/local/api-keys.json"),
        "HEADWATER_RATE_LIMIT_RPS": "0",
        "HEADWATER_FIREWALL_POLICY": "redact",
        "HEADWATER_REDIS_URL": redis_url,
        "HEADWATER_BUDGETS": json.dumps(budgets),
        "HEADWATER_MODEL_PRICES": json.dumps({"mock-0ms": price, "mock-20ms": price}),
        "HEADWATER_ANSWER_CACHE": "exact",
    }


@dataclass
class Stack:
    mock_url: str
    gateway_url: str
    litellm_url: str | None
    litellm_error: str | None
    litellm_version: str | None
    ready_s: dict[str, float]


@contextmanager
def stack(
    root: Path, *, gateway_cpus: list[int], rest: list[int], litellm: bool
) -> Iterator[Stack]:
    """The mock, Redis, Kafka, Headwater and (if it can be set up) LiteLLM."""
    with ExitStack() as stacked:
        mock_port, redis_port, kafka_port = free_port(), free_port(), free_port()
        mock = ManagedProcess(
            "mock",
            [sys.executable, "-m", "bench.mock_openai", "--port", str(mock_port)],
            log_path=root / "mock.log",
            ready=http_ok(f"http://127.0.0.1:{mock_port}/health"),
            cwd=REPO,
            cpus=rest,
        )
        redis = redis_process(port=redis_port, data_dir=root / "redis", log_path=root / "redis.log")
        redis.argv = ["taskset", "-c", ",".join(map(str, rest)), *redis.argv]
        kafka = kafka_process(
            port=kafka_port, data_dir=root / "kafka", log_path=root / "kafka.log", cpus=rest
        )
        ready = stacked.enter_context(started([mock, redis, kafka], timeout_s=300, say=say))
        mock_url = f"http://127.0.0.1:{mock_port}/v1"
        env = gateway_env(
            root,
            bootstrap=f"127.0.0.1:{kafka_port}",
            mock_url=mock_url,
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
        )
        api_port = free_port()
        api = headwater_process(
            env=env, port=api_port, log_path=root / "headwater.log", cpus=gateway_cpus
        )
        ready |= stacked.enter_context(started([api], timeout_s=300, say=say))
        litellm_url = error = version = None
        if litellm:
            binary, error = ensure_litellm(LITELLM_VENV)
            if binary is not None:
                version = litellm_version(LITELLM_VENV)
                port = free_port()
                config = litellm_config(root / "litellm.yaml", mock_url)
                proxy = litellm_process(binary, config, port, root, gateway_cpus)
                try:
                    ready |= stacked.enter_context(started([proxy], timeout_s=300, say=say))
                    litellm_url = f"http://127.0.0.1:{port}/v1"
                except StackError as exc:
                    error = f"litellm did not start: {str(exc)[-1500:]}"
        else:
            error = "not measured (--no-litellm)"
        if error:
            say(f"LiteLLM: {error}")
        yield Stack(mock_url, f"http://127.0.0.1:{api_port}/v1", litellm_url, error, version, ready)


def targets_for(found: Stack, *, key: str, delayed: bool) -> list[MockTarget]:
    """direct, headwater and (when running) litellm, for the zero or the 20 ms mock."""
    mock = "mock-20ms" if delayed else "mock-0ms"
    json_headers = {"content-type": "application/json"}
    out = [
        MockTarget("direct", f"{found.mock_url}/chat/completions", json_headers, mock),
        MockTarget(
            "headwater",
            f"{found.gateway_url}/chat/completions",
            {**json_headers, "authorization": f"Bearer {key}"},
            "large" if delayed else "small",
            headwater=True,
        ),
    ]
    if found.litellm_url:
        out.append(
            MockTarget(
                "litellm",
                f"{found.litellm_url}/chat/completions",
                {**json_headers, "authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                mock,
            )
        )
    return out


async def one_run(
    found: Stack, args: argparse.Namespace, numbers: Iterator[int], run: int
) -> dict[str, Any]:
    """c1 over the zero mock, then the sustained climb of each proxy over the 20 ms mock."""
    connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=3)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        fast = targets_for(found, key=args.key, delayed=False)
        say(f"run {run}: warm-up")
        await sequential(
            client, fast, pairs=args.warmup, max_tokens=args.max_tokens, numbers=numbers
        )
        say(f"run {run}: c1, {args.pairs} interleaved rounds")
        samples, failed = await sequential(
            client, fast, pairs=args.pairs, max_tokens=args.max_tokens, numbers=numbers
        )
        c1: dict[str, Any] = {**added_latency(samples), "failed_requests": failed}
        say(f"run {run}: c1 {json.dumps(c1)}")
        throughput: dict[str, Any] = {}
        proxies = [t for t in targets_for(found, key=args.key, delayed=True) if t.name != "direct"]
        if run % 2:
            proxies.reverse()  # each goes first in turn
        for target in proxies:
            levels = await sustained(
                client, target, seconds=args.level_s, max_tokens=args.max_tokens, numbers=numbers
            )
            best = best_sustained(levels)
            throughput[target.name] = {
                "rps": round(best.rps, 1) if best else None,
                "at_concurrency": best.concurrency if best else None,
                "p99_ms": round(best.p99_s * 1000, 2) if best else None,
                "levels": [level.summary() for level in levels],
            }
    return {"c1": c1, "sustained": throughput}


def summarise(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """The headline figures: medians over runs."""

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    def c1(name: str, key: str) -> float | None:
        return median([r["c1"].get(name, {}).get(key) for r in runs])

    def rps(name: str) -> float | None:
        return median([r["sustained"].get(name, {}).get("rps") for r in runs])

    ours, theirs = rps("headwater"), rps("litellm")
    ours_core = round(ours / cores, 1) if ours is not None else None
    theirs_core = round(theirs / cores, 1) if theirs is not None else None
    return {
        "added_p99_ms_c1": c1("headwater", "added_p99_ms"),
        "added_p50_ms_c1": c1("headwater", "added_p50_ms"),
        "rps_per_core": ours_core,
        "litellm_rps_per_core": theirs_core,
        "litellm_added_p99_ms_c1": c1("litellm", "added_p99_ms"),
        "litellm_added_p50_ms_c1": c1("litellm", "added_p50_ms"),
        "rps_per_core_vs_litellm": (
            round(ours_core / theirs_core, 2) if ours_core and theirs_core else None
        ),
        "targets": TARGETS,
    }


def cpu_layout(gateway_cpus: int) -> tuple[list[int], list[int]]:
    """The last ``gateway_cpus`` CPUs of this process for the proxies, the rest for the
    mock, Redis, Kafka and the client (all CPUs for both where there are too few)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) <= gateway_cpus:
        return cpus, cpus
    return cpus[-gateway_cpus:], cpus[:-gateway_cpus]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway --mock", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="whole runs; medians (default 3)")
    parser.add_argument("--pairs", type=int, default=500, help="c1 rounds per run (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up rounds (default 50)")
    parser.add_argument("--level-s", type=float, default=8.0, help="seconds per level (default 8)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--gateway-cpus", type=int, default=1, help="CPUs per proxy (default 1)")
    parser.add_argument("--key", default="hw-dev-alice", help="API key for Headwater")
    parser.add_argument(
        "--litellm", action=argparse.BooleanOptionalAction, default=True, help="LiteLLM baseline"
    )
    args = parser.parse_args(argv)
    gateway_cpus, rest = cpu_layout(args.gateway_cpus)
    os.sched_setaffinity(0, rest)  # the client beside the mock, off the proxies' CPUs
    machine: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus": {"proxies": gateway_cpus, "mock_redis_kafka_client": rest},
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
    }
    began = time.monotonic()
    numbers = iter(range(10**12))
    with (
        workspace() as root,
        stack(root, gateway_cpus=gateway_cpus, rest=rest, litellm=args.litellm) as found,
    ):
        runs = []
        for run in range(args.runs):
            runs.append(asyncio.run(one_run(found, args, numbers, run)))
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result = {
        **summarise(runs, len(gateway_cpus)),
        "litellm_error": found.litellm_error,
        "litellm_version": found.litellm_version,
        "runs": runs,
        "settings": {
            "runs": args.runs,
            "c1_rounds": args.pairs,
            "level_s": args.level_s,
            "ladder": list(LADDER),
            "bounds": {"p99_s": P99_LIMIT_S, "error_rate": ERROR_LIMIT},
            "max_tokens": args.max_tokens,
            "mock_delay_ms": {"c1": 0, "sustained": 20},
            "headwater": "firewall redact, routing small/large, audit to Kafka, budgets "
            "(3, Redis), exact answer cache (every request a miss), retrieval off",
            "litellm": "one worker, no database, master key (required by 1.108)",
        },
        "machine": machine,
        "ready_s": found.ready_s,
        "elapsed_s": round(time.monotonic() - began, 1),
    }
    print(json.dumps(result))
    return 0

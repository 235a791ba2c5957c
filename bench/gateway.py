"""Gateway overhead: the latency and throughput Headwater adds in front of a vLLM server.

    python -m bench.gateway --quick        # ~3 minutes on 2 cores, servers included
    python -m bench.gateway --mock         # issue 17: a mock upstream, beside LiteLLM
                                           # (bench/gateway_mock.py; --mock --help)

Starts a private Kafka broker and a vLLM server with tiny-llama (deploy/llm/tiny_model.py:
2 layers, random weights, so the model's own time is small and the proxy's share shows),
then ``headwater serve`` with that server as its small tier, the dev API keys and the
per-key rate limit off (HEADWATER_RATE_LIMIT_RPS=0: at concurrency 32 it would throttle
the gateway, not measure it). One async HTTP client (aiohttp, keep-alive, request bodies
serialised once; httpx 0.28 as the client capped vLLM itself at ~20 requests/s at
concurrency 32, aiohttp got ~60) sends the same OpenAI chat requests to both targets:

- direct:  POST {vllm}/v1/chat/completions with ``model`` = the served name;
- gateway: POST {headwater}/v1/chat/completions with ``model`` = ``small`` and
  ``"headwater": {"retrieval": {"enabled": false}}``: retrieval is a feature, not a proxy
  cost, so it is off. Everything else on the chat path stays on (auth, firewall, routing,
  tracing, metrics, the audit record, queued for Kafka as the answer is sent: the default).

Short prompts without PII, ``temperature`` 0, ``max_tokens`` 16; tiny-llama never stops
early, so every answer has exactly ``max_tokens`` completion tokens, which is checked on
every response of both targets.

CPUs (``--cpu-split``, the default on 2 or more cores): vLLM runs on the upper half of
the CPUs (its processes and its OpenMP threads), the broker, the gateway and this client
on the lower half. In the deployments we ship the model servers have machines (GPUs) of
their own; on one machine, vLLM's CPU workers keep every core they may use busy, and a
gateway sharing them measures the scheduler, not the gateway (BENCHMARKS.md has both).
The client shares its half with the gateway, so its work counts against the gateway,
never against vLLM. ``--no-cpu-split`` lets everything share every core.

Phases, each after a warm-up of every target:

- c1: direct and gateway requests interleaved (A B, B A, A B...) so drift hits both.
  ``overhead_p50_ms`` = p50(gateway) - p50(direct), ``overhead_p95_ms`` likewise; the p50
  of the per-pair differences is reported too.
- ttft: streaming requests interleaved the same way, timed to the first delta with
  content; ``ttft_overhead_ms`` = p50(gateway) - p50(direct).
- c8, c32: closed-loop clients (each sends its next request when its last one is
  answered) for a fixed number of requests per block (30 or more rounds of the clients,
  so the ramp at a block's start and end hardly counts), direct and gateway blocks
  alternating (A B, B A...); requests/s is the median over blocks,
  ``throughput_ratio_c32`` = gateway / direct at concurrency 32, and
  ``throughput_ratio_c32_paired`` the median of the ratios of back-to-back blocks (less
  sensitive to other load on the machine); latency p50/p95 over all blocks.
- passthrough (``--passthrough``, the default): at c8 and c32 a third target in the
  rotation, ``bench.passthrough``, a proxy that only forwards (the gateway's server and
  upstream client, none of its features), on the gateway's CPUs, with the direct body.
  ``throughput_ratio_c32_passthrough`` = its requests/s / direct's: the ratio any proxy
  reaches in front of this server (a CPU-bound vLLM's throughput depends on how soon each
  next request follows an answer; BENCHMARKS.md), and ``gateway_vs_passthrough`` the
  gateway's against it.

Without retrieval the gateway sends the conversation as it came, so both targets' prompts
have the same tokens (reported, per target). The JSON also has the gateway process's
CPU ms per request in each phase (at c8/c32 over its own blocks; the passthrough's too)
and its idle CPU, vLLM's own CPU ms per request at c8 and c32 for each target
(``llm_cpu_ms_per_request``: its API server, engine and worker; on a CPU-bound vLLM,
throughput follows it), the CPU layout, the code state (commit, uncommitted gateway
files, a hash of the gateway's code) and the load average before and after.

Targets (issue 5): overhead p50 <= 2 ms, p95 <= 5 ms, throughput ratio >= 0.95.
Progress goes to stderr; stdout gets exactly one JSON object. Exits 1 with the error
body if the gateway answers an error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx

from bench.harness import latency_ms, paired_differences, started, workspace
from deploy.process import ManagedProcess, free_port, http_ok
from deploy.stack import REPO, StackPaths, headwater_process, kafka_process, llm_process

T = TypeVar("T")
TINY_MODEL_NAME = "tiny-llama"  # the folder deploy/llm/setup.sh builds, and its served name
PROMPTS = [
    "What is the capital of France?",
    "Summarise the travel policy in one sentence.",
    "How do I request a new laptop?",
    "When does the quarterly review start?",
    "List three benefits of the onboarding programme.",
    "What does the security incident process say about outages?",
    "Explain the expense report deadline.",
    "Which office has parking for visitors?",
]
QUICK = {"pairs": 200, "ttft_pairs": 100, "blocks": 5, "c8_requests": 480, "c32_requests": 960}
FULL = {"pairs": 1000, "ttft_pairs": 400, "blocks": 5, "c8_requests": 960, "c32_requests": 2400}
TARGETS = {"overhead_p50_ms": 2.0, "overhead_p95_ms": 5.0, "throughput_ratio_c32": 0.95}


class BenchFailure(Exception):
    """The run cannot give a valid comparison (an error answer, a token-count mismatch)."""


def say(message: str) -> None:
    print(f"[bench.gateway] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    """One endpoint and its prepared request bodies (one per prompt, serialised once)."""

    name: str
    url: str
    headers: dict[str, str]
    bodies: list[bytes]
    stream_bodies: list[bytes]


def make_target(
    name: str, *, base_url: str, model: str, max_tokens: int, key: str | None, gateway: bool
) -> Target:
    def encode(prompt: str, *, stream: bool) -> bytes:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        if gateway:
            body["headwater"] = {"retrieval": {"enabled": False}}
        return json.dumps(body, separators=(",", ":")).encode()

    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return Target(
        name=name,
        url=f"{base_url.rstrip('/')}/chat/completions",
        headers=headers,
        bodies=[encode(p, stream=False) for p in PROMPTS],
        stream_bodies=[encode(p, stream=True) for p in PROMPTS],
    )


@dataclass
class Tally:
    """What the responses of one target said: usage seen, for the token checks."""

    max_tokens: int
    prompt_tokens: set[int] = field(default_factory=set)
    route: dict[str, Any] | None = None

    def check(self, target: Target, usage: dict[str, Any] | None) -> None:
        completion = (usage or {}).get("completion_tokens")
        if completion != self.max_tokens:
            raise BenchFailure(
                f"{target.name} answered {completion} completion tokens, expected "
                f"{self.max_tokens} (as the other target): the comparison would be unfair"
            )
        self.prompt_tokens.add(int((usage or {}).get("prompt_tokens", -1)))


def _fail_on_error(target: Target, status: int, text: str) -> None:
    if status != 200:
        raise BenchFailure(f"{target.name} answered HTTP {status}: {text[:2000]}")


async def complete(client: aiohttp.ClientSession, target: Target, n: int, tally: Tally) -> float:
    """One non-streamed request; returns seconds to the whole response body."""
    body = target.bodies[n % len(PROMPTS)]
    began = time.perf_counter()
    async with client.post(target.url, data=body, headers=target.headers) as reply:
        raw = await reply.read()
    elapsed = time.perf_counter() - began
    _fail_on_error(target, reply.status, raw.decode(errors="replace"))
    answer = json.loads(raw)
    tally.check(target, answer.get("usage"))
    if tally.route is None and "headwater" in answer:
        tally.route = answer["headwater"].get("route")
    return elapsed


async def first_token(client: aiohttp.ClientSession, target: Target, n: int, tally: Tally) -> float:
    """One streamed request; returns seconds to the first delta with content."""
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    body = target.stream_bodies[n % len(PROMPTS)]
    began = time.perf_counter()
    async with client.post(target.url, data=body, headers=target.headers) as reply:
        if reply.status != 200:
            _fail_on_error(target, reply.status, (await reply.read()).decode(errors="replace"))
        async for raw_line in reply.content:
            line = raw_line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if "error" in chunk:
                raise BenchFailure(f"{target.name} stream failed: {line[:2000]!r}")
            choices = chunk.get("choices") or [{}]
            if ttft is None and choices[0].get("delta", {}).get("content"):
                ttft = time.perf_counter() - began
            usage = chunk.get("usage") or usage
    tally.check(target, usage)
    if ttft is None:
        raise BenchFailure(f"{target.name} streamed no content")
    return ttft


Call = Callable[[aiohttp.ClientSession, Target, int, Tally], Awaitable[float]]


async def interleaved(
    client: aiohttp.ClientSession,
    call: Call,
    targets: list[Target],
    tallies: list[Tally],
    pairs: int,
) -> list[list[float]]:
    """``pairs`` rounds of one request to each target, sequential, in the order A B, B A,
    A B... so each target follows each equally often (work a target leaves behind after
    answering, such as the gateway's logging, lands on both)."""
    samples: list[list[float]] = [[] for _ in targets]
    rounds = list(zip(targets, tallies, samples, strict=True))
    for n in range(pairs):
        for target, tally, out in rounds if n % 2 == 0 else rounds[::-1]:
            out.append(await call(client, target, n, tally))
    return samples


async def closed_loop(
    client: aiohttp.ClientSession,
    target: Target,
    tally: Tally,
    *,
    concurrency: int,
    requests: int,
    after_each: Callable[[], None] | None = None,
) -> tuple[float, list[float]]:
    """``concurrency`` clients share ``requests`` requests (each client calls
    ``after_each``, if given, after every answer); returns (requests/s, latencies)."""
    numbers = iter(range(requests))
    latencies: list[float] = []

    async def client_loop() -> None:
        for n in numbers:  # shared: each client takes the next request number
            latencies.append(await complete(client, target, n, tally))
            if after_each is not None:
                after_each()

    began = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return requests / (time.perf_counter() - began), latencies


def rotated(items: Sequence[T], block: int) -> list[T]:
    """``items`` starting at position ``block`` (mod their number): block by block, each
    goes first in turn (with two: they alternate), so drift or a slow start favours none."""
    shift = block % len(items)
    return [*items[shift:], *items[:shift]]


def client_session() -> aiohttp.ClientSession:
    """The benchmark client: one keep-alive session for every target."""
    return aiohttp.ClientSession(
        # Idle connections are dropped before uvicorn's 5 s keep-alive (vLLM's and ours)
        # closes them, which would fail a POST sent on one at that moment.
        connector=aiohttp.TCPConnector(limit=128, keepalive_timeout=3),
        timeout=aiohttp.ClientTimeout(total=120.0),
    )


@dataclass(frozen=True)
class Plan:
    warmup: int
    pairs: int
    ttft_pairs: int
    blocks: int
    concurrency_requests: dict[int, int]
    phases: list[str]


def c1_result(direct: list[float], gateway: list[float]) -> dict[str, Any]:
    raw = {"direct": latency_ms(direct), "gateway": latency_ms(gateway)}
    diffs = paired_differences(direct, gateway)
    return {
        "pairs": len(direct),
        **raw,
        "overhead_p50_ms": round(raw["gateway"]["p50_ms"] - raw["direct"]["p50_ms"], 3),
        "overhead_p95_ms": round(raw["gateway"]["p95_ms"] - raw["direct"]["p95_ms"], 3),
        "paired_diff_p50_ms": latency_ms(diffs)["p50_ms"],
    }


def concurrency_result(
    concurrency: int,
    requests: int,
    rps: dict[str, list[float]],
    lat: dict[str, list[float]],
    llm_cpu_ms: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    direct_rps, gateway_rps = statistics.median(rps["direct"]), statistics.median(rps["gateway"])
    raw = {name: latency_ms(values) for name, values in lat.items()}
    extra: dict[str, Any] = {}
    if "passthrough" in rps:
        # The do-nothing proxy (bench.passthrough) in the same run: the ratio any proxy
        # in front of this server reaches, and the gateway's against it.
        floor = statistics.median(rps["passthrough"])
        extra |= {
            "passthrough_rps": round(floor, 2),
            "throughput_ratio_passthrough": round(floor / direct_rps, 3),
            "gateway_vs_passthrough": round(gateway_rps / floor, 3),
            "passthrough_rps_blocks": [round(x, 2) for x in rps["passthrough"]],
        }
    if llm_cpu_ms and all(llm_cpu_ms.values()):
        # vLLM's own CPU per request (its API server, engine and worker), median over the
        # blocks of each target: on a CPU-bound vLLM, throughput follows it.
        extra["llm_cpu_ms_per_request"] = {
            name: round(statistics.median(values), 3) for name, values in llm_cpu_ms.items()
        }
    return {
        "concurrency": concurrency,
        "requests_per_block": requests,
        "blocks": len(rps["direct"]),
        "direct_rps": round(direct_rps, 2),
        "gateway_rps": round(gateway_rps, 2),
        "throughput_ratio": round(gateway_rps / direct_rps, 3),
        # Blocks k of both targets ran back to back: the median of their ratios is the
        # least sensitive to load from outside that changes between blocks.
        "throughput_ratio_paired_median": round(
            statistics.median(g / d for d, g in zip(rps["direct"], rps["gateway"], strict=True)),
            3,
        ),
        "direct_rps_blocks": [round(x, 2) for x in rps["direct"]],
        "gateway_rps_blocks": [round(x, 2) for x in rps["gateway"]],
        **raw,
        "overhead_p50_ms": round(raw["gateway"]["p50_ms"] - raw["direct"]["p50_ms"], 3),
        "overhead_p95_ms": round(raw["gateway"]["p95_ms"] - raw["direct"]["p95_ms"], 3),
        **extra,
    }


def _proc_stat(stat: Path) -> tuple[int, int] | None:
    """(parent pid, user + system clock ticks) from a ``/proc/<pid>/stat`` file; None if
    the process is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree_cpu_s(root: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants
    that are still running (from /proc; Linux only); None if ``root`` is gone."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        read = _proc_stat(stat)
        if read is not None:  # else it exited meanwhile
            pid = int(stat.parent.name)
            parent[pid], ticks[pid] = read
    if root not in ticks:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(ticks[pid] for pid in tree) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    read = _proc_stat(Path(f"/proc/{pid}/stat")) if pid is not None else None
    return read[1] / os.sysconf("SC_CLK_TCK") if read is not None else None


class CpuMeter:
    """CPU time of the gateway process (all its threads, from /proc; Linux only), of the
    passthrough proxy's, and of the vLLM server's processes when the bench started it."""

    def __init__(
        self, pid: int | None, llm_pid: int | None = None, passthrough_pid: int | None = None
    ):
        self.llm_pid = llm_pid
        self.proxies = {"gateway": pid, "passthrough": passthrough_pid}
        self.readings: dict[str, float] = {}
        self._spent: dict[str, float] = {}

    def llm_cpu_s(self) -> float | None:
        return process_tree_cpu_s(self.llm_pid) if self.llm_pid is not None else None

    def _cpu_s(self) -> float | None:
        return process_cpu_s(self.proxies["gateway"])

    @contextmanager
    def phase(self, name: str, *, requests: int) -> Iterator[None]:
        """For the phases that interleave single requests to the gateway and vLLM (c1,
        ttft): the gateway's CPU ms per request of the phase as ``{name}_ms_per_request``
        (its idle work during the phase included: see ``idle_pct``), and this client's CPU
        ms per request of either target as ``client_{name}_ms_per_request``."""
        before, client_before = self._cpu_s(), time.process_time()
        yield
        after, client_s = self._cpu_s(), time.process_time() - client_before
        self.readings[f"client_{name}_ms_per_request"] = round(client_s * 500 / requests, 3)
        if before is not None and after is not None:
            self.readings[f"{name}_ms_per_request"] = round((after - before) * 1000 / requests, 3)

    @contextmanager
    def block(self, target: str) -> Iterator[None]:
        """One block of ``target``: the CPU its proxy process (gateway, passthrough) uses
        meanwhile is added to that proxy's count, and this client's to its own."""
        pid = self.proxies.get(target)
        before, client_before = process_cpu_s(pid), time.process_time()
        yield
        after = process_cpu_s(pid)
        self._spent["client"] = self._spent.get("client", 0.0) + time.process_time() - client_before
        if before is not None and after is not None:
            self._spent[target] = self._spent.get(target, 0.0) + after - before

    def blocks_done(self, phase: str, *, requests: int, targets: int) -> None:
        """Records the CPU ms per request over the blocks of ``phase`` (``requests`` to
        each of ``targets`` targets): ``{phase}_ms_per_request`` (the gateway, during
        its own blocks), ``passthrough_{phase}_ms_per_request`` likewise, and
        ``client_{phase}_ms_per_request`` (this client, any target)."""
        spent, self._spent = self._spent, {}
        for name, seconds in spent.items():
            total = requests * targets if name == "client" else requests
            prefix = "" if name == "gateway" else f"{name}_"
            self.readings[f"{prefix}{phase}_ms_per_request"] = round(seconds * 1000 / total, 3)

    async def idle(self, seconds: float) -> None:
        """Records the idle gateway's CPU use (its worker, health checks) as a percentage."""
        before = self._cpu_s()
        await asyncio.sleep(seconds)
        after = self._cpu_s()
        if before is not None and after is not None:
            self.readings["idle_pct"] = round((after - before) * 100 / seconds, 2)


@dataclass(frozen=True)
class Bench:
    """The client, both targets and what is recorded about them during one run."""

    client: aiohttp.ClientSession
    plan: Plan
    direct: Target
    gateway: Target
    tallies: dict[str, Tally]
    cpu: CpuMeter
    passthrough: Target | None = None

    @property
    def throughput_targets(self) -> list[Target]:
        """The targets of the concurrency phases: direct, gateway and, when it runs, the
        do-nothing proxy."""
        extra = [self.passthrough] if self.passthrough else []
        return [self.direct, self.gateway, *extra]

    async def pairs(self, call: Call, pairs: int) -> tuple[list[float], list[float]]:
        targets = [self.direct, self.gateway]
        tallies = [self.tallies[t.name] for t in targets]
        direct, gateway = await interleaved(self.client, call, targets, tallies, pairs)
        return direct, gateway

    async def warm_up(self) -> None:
        say(f"warm-up: {self.plan.warmup} pairs, {self.plan.warmup // 2} streamed, c32 bursts")
        await self.cpu.idle(2.0)
        await self.pairs(complete, self.plan.warmup)
        await self.pairs(first_token, max(1, self.plan.warmup // 2))
        for target in self.throughput_targets:
            tally = self.tallies[target.name]
            await closed_loop(self.client, target, tally, concurrency=32, requests=64)

    async def sequential(self, phase: str) -> dict[str, Any]:
        call, pairs = (
            (complete, self.plan.pairs) if phase == "c1" else (first_token, self.plan.ttft_pairs)
        )
        say(f"{phase}: {pairs} interleaved pairs")
        with self.cpu.phase(phase, requests=pairs):
            direct, gateway = await self.pairs(call, pairs)
        result = c1_result(direct, gateway)
        say(f"{phase}: {json.dumps(result)}")
        return result

    async def concurrent(self, concurrency: int) -> dict[str, Any]:
        requests, blocks = self.plan.concurrency_requests[concurrency], self.plan.blocks
        targets = self.throughput_targets
        rps: dict[str, list[float]] = {target.name: [] for target in targets}
        lat: dict[str, list[float]] = {target.name: [] for target in targets}
        llm_cpu_ms: dict[str, list[float]] = {target.name: [] for target in targets}
        for block in range(blocks):
            for target in rotated(targets, block):
                say(f"c{concurrency}: block {block + 1}/{blocks} {target.name}, {requests} req")
                llm_before = self.cpu.llm_cpu_s()
                with self.cpu.block(target.name):
                    block_rps, latencies = await closed_loop(
                        self.client,
                        target,
                        self.tallies[target.name],
                        concurrency=concurrency,
                        requests=requests,
                    )
                llm_after = self.cpu.llm_cpu_s()
                rps[target.name].append(block_rps)
                lat[target.name].extend(latencies)
                if llm_before is not None and llm_after is not None:
                    llm_cpu_ms[target.name].append((llm_after - llm_before) * 1000 / requests)
        self.cpu.blocks_done(f"c{concurrency}", requests=requests * blocks, targets=len(targets))
        result = concurrency_result(concurrency, requests, rps, lat, llm_cpu_ms)
        say(f"c{concurrency}: {json.dumps(result)}")
        return result


async def run_phases(
    plan: Plan,
    direct: Target,
    gateway: Target,
    tallies: dict[str, Tally],
    cpu: CpuMeter,
    passthrough: Target | None = None,
) -> dict[str, Any]:
    """Warm-up, then the phases of ``plan`` in order c1, ttft, c8, c32."""
    results: dict[str, Any] = {}
    async with client_session() as client:
        bench = Bench(client, plan, direct, gateway, tallies, cpu, passthrough)
        await bench.warm_up()
        for phase in ("c1", "ttft"):
            if phase in plan.phases:
                results[phase] = await bench.sequential(phase)
        for concurrency in plan.concurrency_requests:
            if f"c{concurrency}" in plan.phases:
                results[f"c{concurrency}"] = await bench.concurrent(concurrency)
    return results


@dataclass
class Servers:
    llm_url: str
    llm_model: str
    gateway_url: str
    gateway_pid: int | None = None
    llm_pid: int | None = None
    passthrough_url: str | None = None
    passthrough_pid: int | None = None
    ready_s: dict[str, float] = field(default_factory=dict)


def _gateway_env(root: Path, *, bootstrap: str, llm_url: str, llm_model: str) -> dict[str, str]:
    return {
        "HEADWATER_KAFKA_BOOTSTRAP": bootstrap,
        "HEADWATER_LLM_SMALL_URL": llm_url,
        "HEADWATER_LLM_SMALL_MODEL": llm_model,
        "HEADWATER_DATA_DIR": str(root / "data"),
        "HEADWATER_API_KEYS_FILE": str(REPO / "deploy/local/api-keys.json"),
        "HEADWATER_RATE_LIMIT_RPS": "0",
    }


@dataclass(frozen=True)
class CpuLayout:
    """Which CPUs vLLM gets, and which the broker, the gateway and the client share."""

    llm: list[int] | None
    rest: list[int] | None

    @classmethod
    def choose(cls, split: bool) -> CpuLayout:
        """The upper half of this process's CPUs for vLLM, the lower half for the rest."""
        cpus = sorted(os.sched_getaffinity(0))
        if not split or len(cpus) < 2:
            return cls(None, None)
        half = len(cpus) // 2
        return cls(llm=cpus[half:], rest=cpus[:half])

    def pin_this_process(self) -> None:
        if self.rest:
            os.sched_setaffinity(0, self.rest)


@contextmanager
def servers(args: argparse.Namespace, root: Path, cpus: CpuLayout) -> Iterator[Servers]:
    """The vLLM server and the gateway: given by URL, or started here and stopped on exit;
    the passthrough proxy (unless ``--no-passthrough``): started here.

    vLLM and the Kafka broker start together (vLLM is the slow one); the gateway after both.
    """
    with ExitStack() as stack:
        first: list[ManagedProcess] = []
        llm_url = args.llm_url
        llm = None
        if not llm_url:
            port = free_port()
            model_dir = StackPaths.default().models_dir / TINY_MODEL_NAME
            llm = llm_process(
                model_dir=model_dir,
                served_name=args.llm_model,
                port=port,
                log_path=root / "llm.log",
                cpus=cpus.llm,
            )
            first.append(llm)
            llm_url = f"http://127.0.0.1:{port}/v1"
        floor_port = free_port()
        floor = [passthrough_process(llm_url, floor_port, root, cpus)] if args.passthrough else []
        if args.gateway_url:
            ready = stack.enter_context(started(first + floor, timeout_s=600, say=say))
            yield Servers(
                llm_url,
                args.llm_model,
                args.gateway_url.rstrip("/"),
                llm_pid=llm.pid if llm else None,
                ready_s=ready,
                **_passthrough_at(floor, floor_port),
            )
            return
        kafka_port = free_port()
        first.append(
            kafka_process(
                port=kafka_port,
                data_dir=root / "kafka",
                log_path=root / "kafka.log",
                cpus=cpus.rest,
            )
        )
        ready = stack.enter_context(started(first, timeout_s=600, say=say))
        env = _gateway_env(
            root, bootstrap=f"127.0.0.1:{kafka_port}", llm_url=llm_url, llm_model=args.llm_model
        )
        port = free_port()
        api = headwater_process(env=env, port=port, log_path=root / "headwater.log", cpus=cpus.rest)
        ready |= stack.enter_context(started([api, *floor], timeout_s=300, say=say))
        yield Servers(
            llm_url,
            args.llm_model,
            f"http://127.0.0.1:{port}/v1",
            gateway_pid=api.pid,
            llm_pid=llm.pid if llm else None,
            ready_s=ready,
            **_passthrough_at(floor, floor_port),
        )


def passthrough_process(llm_url: str, port: int, root: Path, cpus: CpuLayout) -> ManagedProcess:
    """``bench.passthrough`` in front of ``llm_url``, on the gateway's CPUs."""
    return ManagedProcess(
        "passthrough",
        [sys.executable, "-m", "bench.passthrough", "--upstream", llm_url, "--port", str(port)],
        log_path=root / "passthrough.log",
        ready=http_ok(f"http://127.0.0.1:{port}/health"),
        cwd=REPO,
        cpus=cpus.rest,
    )


def _passthrough_at(floor: list[ManagedProcess], port: int) -> dict[str, Any]:
    """The started passthrough's URL and pid as ``Servers`` fields (none started: none)."""
    if not floor:
        return {}
    return {"passthrough_url": f"http://127.0.0.1:{port}/v1", "passthrough_pid": floor[0].pid}


def _code_state() -> dict[str, Any]:
    """The commit, the gateway's uncommitted files and a hash of the gateway's code as run."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    packages = ("api", "inference", "core", "acl")
    digest = hashlib.sha256()
    for path in sorted(p for package in packages for p in (REPO / package).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    changed = git("status", "--porcelain", "--", *packages).splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": [line[3:] for line in changed],
        "gateway_code_sha256": digest.hexdigest()[:16],
    }


def _vllm(found: Servers) -> dict[str, Any]:
    try:
        reply = httpx.get(f"{found.llm_url.removesuffix('/v1')}/version", timeout=5)
        version = str(reply.json().get("version"))
    except (httpx.HTTPError, ValueError):
        version = None
    return {"version": version, "model": found.llm_model, "url": found.llm_url}


def make_plan(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else FULL
    pick: Callable[[str], int] = lambda name: getattr(args, name) or base[name]  # noqa: E731
    return Plan(
        warmup=args.warmup,
        pairs=pick("pairs"),
        ttft_pairs=pick("ttft_pairs"),
        blocks=pick("blocks"),
        concurrency_requests={8: pick("c8_requests"), 32: pick("c32_requests")},
        phases=args.phases.split(","),
    )


def headline(phases: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance numbers (None for a phase that was not run)."""

    def get(phase: str, key: str) -> Any:
        return phases.get(phase, {}).get(key)

    return {
        "overhead_p50_ms": get("c1", "overhead_p50_ms"),
        "overhead_p95_ms": get("c1", "overhead_p95_ms"),
        "ttft_overhead_ms": get("ttft", "overhead_p50_ms"),
        "throughput_ratio_c32": get("c32", "throughput_ratio"),
        "overhead_paired_p50_ms": get("c1", "paired_diff_p50_ms"),
        "throughput_ratio_c32_paired": get("c32", "throughput_ratio_paired_median"),
        "throughput_ratio_c8": get("c8", "throughput_ratio"),
        "throughput_ratio_c32_passthrough": get("c32", "throughput_ratio_passthrough"),
        "targets": TARGETS,
    }


def settings(args: argparse.Namespace, plan: Plan, found: Servers) -> dict[str, Any]:
    return {
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "prompts": len(PROMPTS),
        "client": f"one aiohttp {aiohttp.__version__} ClientSession, keep-alive, every target",
        "gateway_body_extra": {"model": "small", "headwater.retrieval.enabled": False},
        "gateway_audit_sync": os.environ.get("HEADWATER_AUDIT_SYNC", "false"),
        "gateway_rate_limit": (
            "off (HEADWATER_RATE_LIMIT_RPS=0): the per-key limit would throttle c32"
            if found.gateway_pid
            else "as configured on --gateway-url"
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sizes = ", ".join(f"{k}={QUICK[k]}/{FULL[k]}" for k in QUICK)
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes (quick/full: {sizes})")
    parser.add_argument("--pairs", type=int, help="c1: interleaved direct/gateway pairs")
    parser.add_argument("--ttft-pairs", type=int, help="ttft: interleaved streamed pairs")
    parser.add_argument("--blocks", type=int, help="c8/c32: blocks per target (median taken)")
    parser.add_argument("--c8-requests", type=int, help="requests per block at concurrency 8")
    parser.add_argument("--c32-requests", type=int, help="requests per block at concurrency 32")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up pairs (default 20)")
    parser.add_argument("--max-tokens", type=int, default=16, help="per request (default 16)")
    parser.add_argument(
        "--phases", default="c1,ttft,c8,c32", help="comma-separated subset of c1,ttft,c8,c32"
    )
    parser.add_argument(
        "--llm-url", help="use this running vLLM server (…/v1) instead of starting tiny-llama"
    )
    parser.add_argument(
        "--llm-model", default=TINY_MODEL_NAME, help=f"its served name (default {TINY_MODEL_NAME})"
    )
    parser.add_argument(
        "--gateway-url",
        help="use this running Headwater API (…/v1) instead of starting one; it must route "
        "'small' to --llm-url and should have HEADWATER_RATE_LIMIT_RPS=0",
    )
    parser.add_argument("--key", default="hw-dev-alice", help="API key for the gateway")
    parser.add_argument(
        "--cpu-split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="vLLM on the upper half of the CPUs, broker + gateway + client on the lower "
        "half (default; see above); --no-cpu-split shares every CPU",
    )
    parser.add_argument(
        "--passthrough",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure bench.passthrough, a proxy that only forwards, at c8/c32 "
        "(default; the floor for the throughput ratio, see above)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - {"c1", "ttft", "c8", "c32"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.gateway_url and not args.llm_url:
        parser.error("--gateway-url needs --llm-url (the server the gateway forwards to)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--mock" in argv:  # the mock-upstream mode has its own options and phases
        from bench.gateway_mock import main as mock_main

        return mock_main([a for a in argv if a != "--mock"])
    args = parse_args(argv)
    plan = make_plan(args)
    began = time.monotonic()
    result: dict[str, Any] = {"code": _code_state()}  # before the gateway loads the code
    machine: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
    }
    cpus = CpuLayout.choose(args.cpu_split)
    cpus.pin_this_process()  # the client shares the gateway's CPUs (its work counts there)
    machine["cpus"] = {"llm": cpus.llm, "kafka_gateway_client": cpus.rest}
    with workspace() as root, servers(args, root, cpus) as found:
        result["vllm"] = _vllm(found)
        # name, URL, model, API key, gateway body
        specs = [
            ("direct", found.llm_url, found.llm_model, None, False),
            ("gateway", found.gateway_url, "small", args.key, True),
        ]
        if found.passthrough_url:
            specs.append(("passthrough", found.passthrough_url, found.llm_model, None, False))
        targets = [
            make_target(
                name, base_url=url, model=model, max_tokens=args.max_tokens, key=key, gateway=gw
            )
            for name, url, model, key, gw in specs
        ]
        floor = targets[2] if found.passthrough_url else None
        tallies = {target.name: Tally(args.max_tokens) for target in targets}
        cpu = CpuMeter(found.gateway_pid, found.llm_pid, found.passthrough_pid)
        try:
            phases = asyncio.run(run_phases(plan, targets[0], targets[1], tallies, cpu, floor))
        except (BenchFailure, aiohttp.ClientError) as exc:
            say(f"FAILED: {type(exc).__name__}: {exc}")
            if found.gateway_pid:
                say(f"gateway log tail:\n{_tail(root / 'headwater.log')}")
            return 1
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(
        json.dumps(
            {
                **headline(phases),
                **phases,
                "gateway_cpu": cpu.readings or None,
                "tokens": {
                    "completion_tokens_each": args.max_tokens,
                    "prompt_tokens_direct": sorted(tallies["direct"].prompt_tokens),
                    "prompt_tokens_gateway": sorted(tallies["gateway"].prompt_tokens),
                    "gateway_route": tallies["gateway"].route,
                },
                "settings": settings(args, plan, found),
                **result,
                "machine": machine,
                "ready_s": found.ready_s,
                "elapsed_s": round(time.monotonic() - began, 1),
            }
        )
    )
    return 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


if __name__ == "__main__":
    sys.exit(main())

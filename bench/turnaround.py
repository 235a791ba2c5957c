"""How a CPU-bound vLLM server's throughput depends on its clients' turnaround — no proxy.

    python -m bench.turnaround             # ~70 s on 2 cores, vLLM start included

Starts vLLM with tiny-llama on the upper half of the CPUs, as ``bench.gateway`` does, and
runs closed-loop clients at concurrency 32 against it from this process on the lower
half, with the direct requests of ``bench.gateway``. After each answer the client spins
for T µs before it sends its next request, holding its event loop meanwhile, as a
single-threaded proxy does for the CPU it spends on each request (the gateway: ~0.6 ms
per request at c32; ``bench.passthrough``: ~0.1 ms). Blocks of each T rotate; requests/s
is the median over blocks, and each T's ratio is against T = 0 (the direct client of
``bench.gateway``, which answers in ~0.2 ms of CPU itself).

It shows that part of ``bench.gateway``'s c32 gap that no gateway can avoid on this
machine: vLLM's API server and engine share one core, and a request that arrives while
the API server is still awake from sending the last answers costs vLLM less than one that
wakes it later (BENCHMARKS.md). One JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import time
from typing import Any

from bench.gateway import (
    TINY_MODEL_NAME,
    CpuLayout,
    Tally,
    client_session,
    closed_loop,
    make_target,
    process_tree_cpu_s,
    rotated,
)
from bench.harness import started, workspace
from deploy.process import free_port
from deploy.stack import StackPaths, llm_process


def say(message: str) -> None:
    print(f"[bench.turnaround] {message}", file=sys.stderr, flush=True)


def spin(seconds: float) -> None:
    """Busy for ``seconds``, holding the event loop (as a proxy's own work does)."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def measure(
    url: str, llm_pid: int | None, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Blocks of each turnaround in rotation; requests/s and vLLM's CPU per block."""
    turnarounds: list[int] = args.turnaround_us
    rps: dict[int, list[float]] = {t: [] for t in turnarounds}
    llm_ms: dict[int, list[float]] = {t: [] for t in turnarounds}
    target = make_target(
        "direct",
        base_url=url,
        model=args.llm_model,
        max_tokens=args.max_tokens,
        key=None,
        gateway=False,
    )
    tally = Tally(args.max_tokens)
    async with client_session() as client:

        async def run(turnaround_us: int, requests: int) -> float:
            """One block of closed-loop requests, each client spinning ``turnaround_us``
            after every answer: requests/s."""
            block_rps, _ = await closed_loop(
                client,
                target,
                tally,
                concurrency=args.concurrency,
                requests=requests,
                after_each=functools.partial(spin, turnaround_us / 1e6),
            )
            return block_rps

        await run(0, 4 * args.concurrency)  # warm-up
        for n in range(args.blocks):
            for t in rotated(turnarounds, n):
                before = process_tree_cpu_s(llm_pid) if llm_pid else None
                rps[t].append(await run(t, args.requests))
                after = process_tree_cpu_s(llm_pid) if llm_pid else None
                if before is not None and after is not None:
                    llm_ms[t].append((after - before) * 1000 / args.requests)
            done = ", ".join(f"{t} µs: {rps[t][-1]:.0f}/s" for t in rps)
            say(f"block {n + 1}/{args.blocks}: {done}")
    return summarise(rps, llm_ms)


def summarise(
    rps: dict[int, list[float]], llm_ms: dict[int, list[float]]
) -> dict[str, dict[str, Any]]:
    """Medians over blocks; ratios against the first turnaround (0 µs by default)."""
    medians = {t: statistics.median(values) for t, values in rps.items()}
    base = medians[next(iter(medians))]
    return {
        "rps": {str(t): round(m, 1) for t, m in medians.items()},
        "ratio": {str(t): round(m / base, 3) for t, m in medians.items()},
        "rps_blocks": {str(t): [round(x, 1) for x in values] for t, values in rps.items()},
        "llm_cpu_ms_per_request": {
            str(t): round(statistics.median(values), 3) for t, values in llm_ms.items() if values
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.turnaround",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--turnaround-us",
        type=lambda text: [int(t) for t in text.split(",")],
        default=[0, 100, 300, 600],
        help="client turnarounds in µs, the first the baseline (default 0,100,300,600)",
    )
    parser.add_argument("--blocks", type=int, default=12, help="blocks per turnaround (12)")
    parser.add_argument("--requests", type=int, default=320, help="requests per block (320)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (32)")
    parser.add_argument("--max-tokens", type=int, default=16, help="per request (default 16)")
    parser.add_argument("--llm-url", help="use this running vLLM server (…/v1) instead")
    parser.add_argument(
        "--llm-model", default=TINY_MODEL_NAME, help=f"its served name (default {TINY_MODEL_NAME})"
    )
    args = parser.parse_args(argv)
    turnarounds = args.turnaround_us
    if any(t < 0 for t in turnarounds) or len(set(turnarounds)) != len(turnarounds):
        parser.error("turnarounds are distinct µs >= 0, e.g. 0,100,300")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = CpuLayout.choose(split=True)
    cpus.pin_this_process()
    began = time.monotonic()
    with workspace() as root:
        processes, url = [], args.llm_url
        if not url:
            port = free_port()
            processes.append(
                llm_process(
                    model_dir=StackPaths.default().models_dir / TINY_MODEL_NAME,
                    served_name=args.llm_model,
                    port=port,
                    log_path=root / "llm.log",
                    cpus=cpus.llm,
                )
            )
            url = f"http://127.0.0.1:{port}/v1"
        with started(processes, timeout_s=600, say=say):
            llm_pid = processes[0].pid if processes else None
            result = asyncio.run(measure(url, llm_pid, args))
    print(
        json.dumps(
            {
                **result,
                "turnaround_us": args.turnaround_us,
                "settings": {
                    "blocks": args.blocks,
                    "requests_per_block": args.requests,
                    "concurrency": args.concurrency,
                    "model": args.llm_model,
                    "max_tokens": args.max_tokens,
                },
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "cpus": {"llm": cpus.llm, "client": cpus.rest},
                },
                "elapsed_s": round(time.monotonic() - began, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU per request of the gateway's upstream client: aiohttp against ``inference.http1``.

    python -m bench.upstream_client          # ~10 s

Starts uvicorn (httptools, as vLLM's OpenAI server runs) serving a canned chat completion
of vLLM's size on the upper half of the CPUs, and sends it the same request body from
this process (pinned to the lower half) one request at a time, through aiohttp as
``OpenAIBackend`` used it (a session with a keep-alive connector, bytes body, a total
timeout) and through ``inference.http1.ConnectionPool``. Rounds of ``--requests``
requests alternate between the two clients (after a warm-up of each); the JSON reports
this process's CPU µs per request (``time.process_time``) and the wall time per request,
the median over rounds of each. The server's time is the same for both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.harness import started, workspace
from deploy.process import ManagedProcess, free_port, http_ok
from inference.http1 import ConnectionPool

REQUEST = json.dumps(
    {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "How do I request a new laptop?"}],
        "max_tokens": 16,
        "temperature": 0,
    },
    separators=(",", ":"),
).encode()
ANSWER = json.dumps(
    {
        "id": "chatcmpl-0",
        "object": "chat.completion",
        "created": 0,
        "model": "tiny-llama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello world " * 8},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 16, "total_tokens": 36},
    }
).encode()


async def canned(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """The server: every POST gets ``ANSWER``; GET /health gets 200."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = ANSWER if scope["method"] == "POST" else b"{}"
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(canned, host="127.0.0.1", port=port, http="httptools", log_level="warning")


async def _round(one: Callable[[], Awaitable[None]], requests: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await one()
    n = requests
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def measure(url: str, *, requests: int, rounds: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120, sock_connect=5)
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=3)
    async with aiohttp.ClientSession(
        base_url=url + "/", connector=connector, skip_auto_headers=("User-Agent",)
    ) as session:
        pool = ConnectionPool(url, limit=256)

        async def with_aiohttp() -> None:
            async with session.post(
                "chat/completions",
                data=REQUEST,
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            ) as response:
                raw = await response.read()
            assert response.status == 200 and raw == ANSWER

        async def with_pool() -> None:
            status, raw = await pool.post_json("chat/completions", REQUEST, timeout_s=120)
            assert status == 200 and raw == ANSWER

        clients = {"aiohttp": with_aiohttp, "http1": with_pool}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for one in clients.values():
            await _round(one, requests)  # warm-up
        for n in range(rounds):
            order = list(clients.items()) if n % 2 == 0 else list(clients.items())[::-1]
            for name, one in order:
                results[name].append(await _round(one, requests))
        pool.close()
    out: dict[str, Any] = {}
    for name, values in results.items():
        out[f"{name}_cpu_us_per_request"] = round(statistics.median(v[0] for v in values), 1)
        out[f"{name}_wall_us_per_request"] = round(statistics.median(v[1] for v in values), 1)
        out[f"{name}_cpu_us_rounds"] = [round(v[0], 1) for v in values]
    out["cpu_ratio_http1_to_aiohttp"] = round(
        out["http1_cpu_us_per_request"] / out["aiohttp_cpu_us_per_request"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upstream_client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per client (median)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    server_cpus, client_cpus = (cpus[half:], cpus[:half]) if len(cpus) > 1 else (cpus, cpus)
    os.sched_setaffinity(0, client_cpus)
    port = free_port()
    with workspace() as root:
        server = ManagedProcess(
            "canned upstream",
            [sys.executable, "-m", "bench.upstream_client", "--serve", str(port)],
            log_path=root / "upstream.log",
            ready=http_ok(f"http://127.0.0.1:{port}/health"),
            cpus=server_cpus,
        )
        with started([server], timeout_s=60):
            import uvloop

            result = uvloop.run(
                measure(f"http://127.0.0.1:{port}/v1", requests=args.requests, rounds=args.rounds)
            )
    result["cpus"] = {"server": server_cpus, "client": client_cpus}
    result.update(requests_per_round=args.requests, rounds=args.rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

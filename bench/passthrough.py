"""A proxy that does nothing but forward: the floor under ``bench.gateway``'s throughput.

    python -m bench.passthrough --upstream http://127.0.0.1:8001/v1 --port 8100

``POST /v1/chat/completions`` is sent on to ``{upstream}/chat/completions`` with its body
unchanged, and the upstream's status and body come back unchanged; ``GET /health``
answers 200. It is served as the gateway is (uvicorn with httptools on uvloop) and
forwards over the gateway's own transport (``inference.http1.ConnectionPool``), with
nothing else: no authentication, validation, firewall, routing, tracing, metrics or
audit. What it costs is what any proxy on this stack costs.

``bench.gateway`` runs it as a third target at concurrency 8 and 32, on the gateway's
CPUs: on our 2-core machine the throughput ratio of a vLLM server on one core depends on
how soon each next request follows an answer (BENCHMARKS.md), and this target shows, in
the same run, how much of the gateway's ratio any proxy in between loses. Streaming is
not supported (the benchmark's throughput phases do not stream). Not for production.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from inference.http1 import ConnectionPool, HTTPFailure

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
CHAT_PATH = "/v1/chat/completions"
_JSON = [(b"content-type", b"application/json")]


class Passthrough:
    """The ASGI app."""

    def __init__(self, upstream: str, *, max_connections: int = 64, timeout_s: float = 120.0):
        self._upstream = upstream
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._pool: ConnectionPool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The pool binds to the running loop, so it is made here.
                self._pool = ConnectionPool(self._upstream, limit=self._max_connections)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        route = (scope["method"], scope["path"])
        if route == ("GET", "/health"):
            await _respond(send, 200, b"{}")
        elif route != ("POST", CHAT_PATH):
            await _respond(send, 404, _error(f"only POST {CHAT_PATH} and GET /health"))
        else:
            assert self._pool is not None, "lifespan startup has not run"
            body = await _read_body(receive)
            try:
                status, answer = await self._pool.post_json(
                    "chat/completions", body, timeout_s=self._timeout_s
                )
            except (HTTPFailure, OSError, TimeoutError) as exc:
                status, answer = 502, _error(f"upstream {self._upstream} failed: {exc!r}")
            await _respond(send, status, answer)


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "passthrough"}}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.passthrough",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, help="the vLLM server's …/v1 URL")
    parser.add_argument("--port", type=int, required=True, help="port to serve on")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument(
        "--max-connections", type=int, default=64, help="to the upstream at most (64)"
    )
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        Passthrough(args.upstream, max_connections=args.max_connections),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

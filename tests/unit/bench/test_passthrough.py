"""bench.passthrough, the do-nothing proxy: bodies and statuses go through unchanged, over
one kept-alive upstream connection; a dead upstream is a 502; other routes a 404."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.passthrough import CHAT_PATH, Passthrough
from deploy.process import free_port
from tests.unit.loopback_http import Server, http_response, serving

BODY = b'{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'


async def _started(app: Passthrough) -> asyncio.Queue[dict[str, Any]]:
    """Runs the app's lifespan startup; put a shutdown message on the queue to end it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return inbox


async def _call(app: Passthrough, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    parts = [body[:10], body[10:]]  # in two messages, as a client may send it

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path}, receive, send)
    start, answer = sent
    return start["status"], json.loads(answer["body"])


async def test_requests_go_through_unchanged_on_one_kept_alive_connection() -> None:
    async with serving(Server(answer=lambda head, body: http_response(body))) as upstream:
        app = Passthrough(f"http://127.0.0.1:{upstream.port}/v1")
        inbox = await _started(app)
        for _ in range(3):
            status, answer = await _call(app, "POST", CHAT_PATH, BODY)
            assert (status, answer) == (200, json.loads(BODY))  # the echo of the body sent
        assert upstream.connections == 1
        assert upstream.requests[0][0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        # The upstream's refusal comes back as it is.
        upstream.answer = lambda head, body: b"HTTP/1.1 400 No\r\nContent-Length: 2\r\n\r\n{}"
        assert await _call(app, "POST", CHAT_PATH, BODY) == (400, {})
        await inbox.put({"type": "lifespan.shutdown"})


async def test_a_dead_upstream_is_a_502_and_other_routes_a_404() -> None:
    app = Passthrough(f"http://127.0.0.1:{free_port()}/v1")  # nobody listens there
    inbox = await _started(app)
    status, answer = await _call(app, "POST", CHAT_PATH, BODY)
    assert status == 502
    assert "failed" in answer["error"]["message"]
    assert await _call(app, "GET", "/health") == (200, {})
    status, answer = await _call(app, "POST", "/v1/completions", BODY)
    assert status == 404
    assert CHAT_PATH in answer["error"]["message"]
    await inbox.put({"type": "lifespan.shutdown"})

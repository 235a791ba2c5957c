"""A mock OpenAI upstream for gateway benchmarks: answers every chat completion at once or
after a fixed delay, as the open gateway benchmarks do (a zero-delay mock for the latency
a gateway adds, a mock with a fixed delay for its sustained throughput).

    python -m bench.mock_openai --port 9000

The delay is chosen per request by the model name (``mock-0ms``, ``mock-20ms``: any
``mock-<n>ms``), so one process serves both mocks and one gateway can route to both.
Non-streamed answers are one JSON body; streamed ones (``"stream": true``) one SSE body
(a content delta, a usage chunk, ``[DONE]``). Every answer has ``--completion-tokens``
completion tokens. ``GET /health`` and ``GET /v1/models`` answer as vLLM's do.

A plain asyncio protocol with httptools (the parser uvicorn serves with): the mock shares
a core with the bench's client, so it must cost far less per request than any gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

import httptools

MODEL_DELAY = re.compile(r"mock-(\d+)ms")
MOCK_MODELS = ("mock-0ms", "mock-20ms")


def delay_s(model: str) -> float:
    """The answer delay a model name asks for: ``mock-20ms`` -> 0.02; any other name -> 0."""
    found = MODEL_DELAY.fullmatch(model)
    return int(found.group(1)) / 1000 if found else 0.0


def completion_body(request: dict[str, Any], *, completion_tokens: int) -> tuple[bytes, bytes]:
    """The response (content type, body) to one chat-completion request body."""
    model = str(request.get("model", ""))
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    usage = {
        "prompt_tokens": max(1, prompt_chars // 4),
        "completion_tokens": completion_tokens,
        "total_tokens": max(1, prompt_chars // 4) + completion_tokens,
    }
    text = "ok " * completion_tokens
    common = {"id": "chatcmpl-mock", "created": int(time.time()), "model": model}
    if request.get("stream"):
        delta = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}],
        }
        last = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            "usage": usage,
        }
        events = [json.dumps(delta), json.dumps(last), "[DONE]"]
        return b"text/event-stream", "".join(f"data: {e}\n\n" for e in events).encode()
    answer = {
        **common,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
        ],
        "usage": usage,
    }
    return b"application/json", json.dumps(answer, separators=(",", ":")).encode()


def response(status: int, content_type: bytes, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Error"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, content_type, len(body))
        + body
    )


def models_body() -> bytes:
    data = [{"id": m, "object": "model", "owned_by": "mock"} for m in MOCK_MODELS]
    return json.dumps({"object": "list", "data": data}).encode()


class MockProtocol(asyncio.Protocol):
    """One client connection: keep-alive, requests answered in order."""

    def __init__(self, completion_tokens: int):
        self._tokens = completion_tokens
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._writer = asyncio.get_running_loop().create_task(self._answer())

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 (asyncio API)
        if self._writer is not None:
            self._writer.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._queue.put_nowait((self._url, b"".join(self._body)))
        self._url, self._body = b"", []

    async def _answer(self) -> None:
        """Answers requests in arrival order (HTTP/1.1 pipelining keeps order)."""
        while True:
            url, body = await self._queue.get()
            assert self._transport is not None
            if not body:  # GET
                path = url.split(b"?")[0]
                payload = models_body() if path.endswith(b"/models") else b"{}"
                self._transport.write(response(200, b"application/json", payload))
                continue
            try:
                request = json.loads(body)
            except ValueError:
                self._transport.write(response(400, b"application/json", b'{"error":{}}'))
                continue
            wait = delay_s(str(request.get("model", "")))
            if wait:
                await asyncio.sleep(wait)
            kind, payload = completion_body(request, completion_tokens=self._tokens)
            self._transport.write(response(200, kind, payload))


async def serve(port: int, completion_tokens: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: MockProtocol(completion_tokens), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_openai", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--completion-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        import uvloop  # the gateway's own loop, where installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.completion_tokens))


if __name__ == "__main__":
    main()

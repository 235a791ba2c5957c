"""Client for one OpenAI-compatible server (vLLM's ``api_server``). The only module
that talks to a model server (over ``inference.http1`` and aiohttp).

Non-streamed completions, the gateway's hot path, go through ``inference.http1`` (a
keep-alive pool with httptools' parser, a third of aiohttp's CPU per request); streams
and health checks through aiohttp (rather than httpx: a fraction of its CPU per request;
the gateway's overhead budget is 2 ms at p50, BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from core.errors import InvalidRequest, UpstreamUnavailable
from inference.http1 import ConnectionPool, HTTPFailure

JSON = dict[str, Any]

_CONNECT_TIMEOUT_S = 5.0
# Idle connections are not reused after this long: the server's own keep-alive (uvicorn:
# 5 s) would close them under a new request.
_KEEPALIVE_S = 3.0


class UpstreamFailed(UpstreamUnavailable):
    """The server could not be reached, timed out or answered 5xx: another replica may
    answer. ``before_output`` is True while nothing has been received from it."""

    def __init__(self, message: str, *, before_output: bool = True):
        super().__init__(message, code="upstream_unavailable")
        self.before_output = before_output


class OpenAIBackend:
    """One served model at ``base_url`` (ending in ``/v1``)."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        timeout_s: float,
        first_token_timeout_s: float | None = None,
        max_connections: int = 256,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._timeout_s = timeout_s
        # A stream is abandoned when no chunk arrives for this long (the first included).
        self._stream_timeout = aiohttp.ClientTimeout(
            total=timeout_s,
            sock_connect=_CONNECT_TIMEOUT_S,
            sock_read=first_token_timeout_s or timeout_s,
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._pool: ConnectionPool | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp binds it to the loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url + "/",
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=_KEEPALIVE_S, ttl_dns_cache=300
                ),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def complete(self, body: JSON) -> JSON:
        """A non-streaming chat completion."""
        if self._pool is None:  # created on first use, inside the running loop
            self._pool = ConnectionPool(
                self.base_url,
                limit=self._max_connections,
                keepalive_s=_KEEPALIVE_S,
                connect_timeout_s=_CONNECT_TIMEOUT_S,
            )
        try:
            status, raw = await self._pool.post_json(
                "chat/completions", _encode(body), timeout_s=self._timeout_s
            )
        except (HTTPFailure, OSError, TimeoutError) as exc:
            raise UpstreamFailed(f"model server {self.model} is unreachable") from exc
        _raise_for_status(status, raw, self.model)
        result: JSON = json.loads(raw)
        return result

    async def stream(self, body: JSON) -> AsyncGenerator[JSON]:
        """A streaming chat completion, one parsed SSE chunk at a time.

        Leaving the iteration early (or cancelling it) closes the connection, which makes
        vLLM abort the request.
        """
        received = False
        try:
            async with self._client().post(
                "chat/completions", data=_encode(body), headers=_JSON, timeout=self._stream_timeout
            ) as response:
                if response.status >= 400:
                    _raise_for_status(response.status, await response.read(), self.model)
                async for raw in response.content:
                    if not raw.startswith(b"data:"):
                        continue
                    data = raw[5:].strip()
                    if data == b"[DONE]":
                        return
                    received = True
                    yield json.loads(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamFailed(
                f"model server {self.model} failed mid-stream", before_output=not received
            ) from exc

    async def healthy(self, timeout_s: float = 2.0) -> bool:
        """True when the server answers its health check."""
        root = self.base_url.removesuffix("/v1")
        try:
            async with self._client().get(
                f"{root}/health", timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports


_JSON = {"Content-Type": "application/json"}


def _encode(body: JSON) -> bytes:
    """The request body as bytes: aiohttp sends bytes as they are, where ``json=`` builds
    a payload object around a string per request."""
    return json.dumps(body, separators=(",", ":")).encode()


def _raise_for_status(status: int, raw: bytes, model: str) -> None:
    if status < 400:
        return
    if 400 <= status < 500 and status not in (408, 429):
        try:
            message = str(json.loads(raw)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"model server rejected the request ({status})"
        raise InvalidRequest(message[:500], code="upstream_rejected")
    raise UpstreamFailed(f"model server {model} answered {status}")

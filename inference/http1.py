"""A keep-alive HTTP/1.1 connection pool for the gateway's non-streamed completions.

It does one thing: POST a body and read the whole response (``Content-Length`` or
chunked), on reused connections, with the response parsed by httptools (llhttp, the
parser uvicorn serves with). aiohttp's request path (sessions, request and response
objects, payloads, timers, traces) cost ~100 µs of CPU per request on our 2-core machine,
this ~40 µs (``python -m bench.upstream_client``): it is the gateway's hot path at
concurrency 32 (BENCHMARKS.md). Streams and health checks stay on aiohttp.

A request that fails, times out or is cancelled closes its connection: a model server
that sees the client leave (vLLM does) stops generating. A connection idle for longer
than ``keepalive_s`` is not reused (servers close idle connections: uvicorn after 5 s).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import urlsplit

import httptools


class HTTPFailure(Exception):
    """The connection failed, closed, or carried something that is not HTTP, before the
    whole response arrived."""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._response: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"the server's response is not valid HTTP/1.1: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None and not self._response.done():
            self._response.set_exception(
                HTTPFailure(f"the server closed the connection mid-response ({exc or 'EOF'})")
            )

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._response is None or self._response.done():  # a second response
            self._fail("the server sent a response no request asked for")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        response = self._response
        if response is not None and not response.done():
            response.set_result((self._parser.get_status_code(), b"".join(self._body)))

    # the pool's side

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        self._body = []
        self.reusable = False
        self._response = self._loop.create_future()
        self._transport.write(data)
        return self._response

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, message: str) -> None:
        if self._response is not None and not self._response.done():
            self._response.set_exception(HTTPFailure(message))
        self.close()


class ConnectionPool:
    """Up to ``limit`` connections to the server at ``base_url`` (``http`` or ``https``).

    Create it inside the event loop that uses it."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        keepalive_s: float = 3.0,
        connect_timeout_s: float = 5.0,
    ):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/") + "/"
        host_header = url.netloc.rpartition("@")[2]
        self._headers = f"Host: {host_header}\r\nContent-Type: application/json\r\n"
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._closed = False

    async def post_json(self, path: str, body: bytes, *, timeout_s: float) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path`` (relative to the base URL): status and body.

        Raises :class:`HTTPFailure`, ``OSError`` (connecting) or ``TimeoutError``."""
        if self._closed:
            raise HTTPFailure("the connection pool is closed")
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        async with asyncio.timeout(timeout_s), self._slots:
            connection = await self._connection()
            try:
                status, raw = await connection.send(head + body)
            except BaseException:
                connection.close()  # failed, timed out or cancelled: the server sees it
                raise
            if connection.reusable and not connection.closed and not self._closed:
                connection.idle_since = self._loop.time()
                self._idle.append(connection)
            else:
                connection.close()
            return status, raw

    async def _connection(self) -> _Connection:
        now = self._loop.time()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: least likely closed
            if not connection.closed and now - connection.idle_since < self._keepalive_s:
                return connection
            connection.close()
        async with asyncio.timeout(self._connect_timeout_s):
            _, connection = await self._loop.create_connection(
                lambda: _Connection(self._loop),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        return connection

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

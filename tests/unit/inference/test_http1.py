"""The completions connection pool against a small HTTP/1.1 server on loopback, which
answers as each test tells it (keep-alive, chunked, close, garbage, never)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference.http1 import ConnectionPool, HTTPFailure
from tests.unit.loopback_http import OK, Server, http_response, serving


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving() as state:
        yield state


def _pool(server: Server, **options: float) -> ConnectionPool:
    limit = int(options.pop("limit", 8))
    return ConnectionPool(f"http://127.0.0.1:{server.port}/v1", limit=limit, **options)


async def test_requests_reuse_one_connection_and_carry_path_headers_and_body(
    server: Server,
) -> None:
    pool = _pool(server)
    for n in range(3):
        assert await pool.post_json("chat/completions", b'{"n":%d}' % n, timeout_s=5) == (200, OK)
    assert server.connections == 1
    head, body = server.requests[2]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in head
    assert b"Content-Type: application/json\r\n" in head and body == b'{"n":2}'
    pool.close()


async def test_a_chunked_response_is_joined_and_the_status_kept(server: Server) -> None:
    server.answer = lambda head, body: (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n4\r\n1}\r\n\r\n0\r\n\r\n'
    )
    pool = _pool(server)
    assert await pool.post_json("x", b"{}", timeout_s=5) == (503, b'{"a":1}\r\n')
    assert await pool.post_json("x", b"{}", timeout_s=5) == (503, b'{"a":1}\r\n')
    assert server.connections == 1
    pool.close()


async def test_connection_close_and_closed_idle_connections_are_not_reused(
    server: Server,
) -> None:
    server.answer = lambda head, body: http_response(extra=b"Connection: close\r\n")
    pool = _pool(server)
    await pool.post_json("x", b"{}", timeout_s=5)
    await pool.post_json("x", b"{}", timeout_s=5)
    assert server.connections == 2

    server.answer = lambda head, body: http_response()
    server.close_after_response = True  # the server drops idle connections at once
    await pool.post_json("x", b"{}", timeout_s=5)
    await asyncio.sleep(0.05)  # its EOF reaches the pool
    assert await pool.post_json("x", b"{}", timeout_s=5) == (200, OK)
    assert server.connections == 4
    pool.close()


async def test_a_connection_with_an_unasked_for_response_is_not_reused(server: Server) -> None:
    server.answer = lambda head, body: http_response() + http_response(b'{"extra":1}')
    pool = _pool(server)
    assert await pool.post_json("x", b"{}", timeout_s=5) == (200, OK)
    assert await pool.post_json("x", b"{}", timeout_s=5) == (200, OK)
    assert server.connections == 2
    pool.close()


async def test_connections_idle_past_keepalive_are_replaced(server: Server) -> None:
    pool = _pool(server, keepalive_s=0.05)
    await pool.post_json("x", b"{}", timeout_s=5)
    await asyncio.sleep(0.1)
    await pool.post_json("x", b"{}", timeout_s=5)
    assert server.connections == 2
    pool.close()


async def test_no_more_connections_than_the_limit(server: Server) -> None:
    pool = _pool(server, limit=2)
    results = await asyncio.gather(*(pool.post_json("x", b"{}", timeout_s=5) for _ in range(6)))
    assert results == [(200, OK)] * 6
    assert server.most_open <= 2
    pool.close()


async def _server_saw_the_client_leave(server: Server) -> None:
    for _ in range(50):
        if server.closed_by_client:
            break
        await asyncio.sleep(0.01)
    assert server.closed_by_client == 1


async def test_a_timeout_closes_the_connection_so_the_server_sees_the_client_leave(
    server: Server,
) -> None:
    server.answer = lambda head, body: None
    pool = _pool(server)
    with pytest.raises(TimeoutError):
        await pool.post_json("x", b"{}", timeout_s=0.2)
    await _server_saw_the_client_leave(server)
    pool.close()


async def test_cancelling_a_request_closes_its_connection(server: Server) -> None:
    server.answer = lambda head, body: None
    pool = _pool(server)
    request = asyncio.ensure_future(pool.post_json("x", b"{}", timeout_s=5))
    while not server.requests:
        await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await _server_saw_the_client_leave(server)
    pool.close()


@pytest.mark.parametrize(
    "reply",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut',  # then the server closes
        b"SMTP ready\r\n\r\n",
    ],
    ids=["closed-mid-body", "not-http"],
)
async def test_a_broken_response_is_an_http_failure(server: Server, reply: bytes) -> None:
    server.answer = lambda head, body: reply
    server.close_after_response = True
    pool = _pool(server)
    with pytest.raises(HTTPFailure):
        await pool.post_json("x", b"{}", timeout_s=5)
    pool.close()


async def test_a_refused_connection_is_an_os_error() -> None:
    pool = ConnectionPool("http://127.0.0.1:9/v1", limit=1)
    with pytest.raises(OSError):
        await pool.post_json("x", b"{}", timeout_s=5)
    pool.close()


async def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        ConnectionPool("unix:///tmp/socket", limit=1)

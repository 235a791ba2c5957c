"""A small HTTP/1.1 server on loopback for the tests of HTTP clients: it answers each
request as the test tells it (keep-alive, chunked, close, garbage, never) and counts
connections and requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

OK = b'{"ok":true}'


def http_response(body: bytes = OK, *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


Answer = Callable[[bytes, bytes], bytes | None]  # (head, body) -> bytes to write, None: hang


@dataclass
class Server:
    answer: Answer = lambda head, body: http_response()  # noqa: E731
    close_after_response: bool = False
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    closed_by_client: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                reply = self.answer(head, body)
                if reply is None:  # never answer; notice the client leaving
                    if not await reader.read(1):
                        self.closed_by_client += 1
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after_response:
                    return
        finally:
            self.open_now -= 1
            writer.close()


@asynccontextmanager
async def serving(state: Server | None = None) -> AsyncIterator[Server]:
    """``state`` (a new ``Server`` by default) listening on a free loopback port."""
    state = state or Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        listener.close()

"""Client for one OpenAI-compatible server (vLLM's ``api_server``). The only module
that talks HTTP to a model server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.errors import InvalidRequest, UpstreamUnavailable

JSON = dict[str, Any]


class OpenAIBackend:
    """One served model at ``base_url`` (ending in ``/v1``)."""

    def __init__(self, *, base_url: str, model: str, timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def complete(self, body: JSON) -> JSON:
        """A non-streaming chat completion."""
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"model server {self.model} is unreachable") from exc
        _raise_for_status(response.status_code, response.text, self.model)
        return dict(response.json())

    async def stream(self, body: JSON) -> AsyncIterator[JSON]:
        """A streaming chat completion, one parsed SSE chunk at a time."""
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    _raise_for_status(
                        response.status_code, (await response.aread()).decode(), self.model
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"model server {self.model} failed mid-stream") from exc

    async def healthy(self) -> bool:
        """True when the server answers its health check."""
        root = self.base_url.removesuffix("/v1")
        try:
            response = await self._client.get(f"{root}/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


def _raise_for_status(status: int, text: str, model: str) -> None:
    if status < 400:
        return
    if 400 <= status < 500:
        try:
            message = str(json.loads(text)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"model server rejected the request ({status})"
        raise InvalidRequest(message[:500], code="upstream_rejected")
    raise UpstreamUnavailable(f"model server {model} answered {status}")

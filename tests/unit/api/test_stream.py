"""The SSE relay: citations in a last chunk, usage only when asked, errors as one event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from api.answering import Answerer, PreparedAnswer
from core.errors import UpstreamUnavailable
from core.settings import Settings
from inference.models import Citation
from inference.router import Route
from inference.vllm import OpenAIBackend


class FakeChat:
    def __init__(self, chunks: list[dict[str, Any]], fail: Exception | None = None):
        self.chunks = chunks
        self.fail = fail

    async def _gen(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in self.chunks:
            yield chunk
        if self.fail:
            raise self.fail

    def stream(self, route: Route, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._gen()


def _prepared() -> PreparedAnswer:
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=1)
    citation = Citation(doc_id="d", chunk_no=0, score=0.9)
    return PreparedAnswer(Route("small", backend, "alias"), {"messages": []}, [citation])


def _answerer(chat: FakeChat) -> Answerer:
    return Answerer(retriever=None, router=None, chat=chat, settings=Settings())  # type: ignore[arg-type]


def _delta(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


USAGE = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


async def _events(answerer: Answerer, *, include_usage: bool) -> list[str]:
    return [e async for e in answerer.stream_sse(_prepared(), include_usage=include_usage)]


async def test_stream_ends_with_citations_then_done_and_hides_usage_unless_asked() -> None:
    events = await _events(
        _answerer(FakeChat([_delta("Hel"), _delta("lo"), USAGE])), include_usage=False
    )
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert events[-1] == "data: [DONE]\n\n"
    assert [p["choices"][0]["delta"]["content"] for p in payloads[:2]] == ["Hel", "lo"]
    assert payloads[-1]["headwater"]["citations"][0]["doc_id"] == "d"
    assert all("usage" not in p for p in payloads)


async def test_usage_chunk_is_relayed_when_the_client_asks() -> None:
    events = await _events(_answerer(FakeChat([_delta("x"), USAGE])), include_usage=True)
    assert any(json.loads(e[6:]).get("usage") for e in events[:-1])


async def test_a_failure_mid_stream_sends_one_error_event_then_done() -> None:
    chat = FakeChat([_delta("par")], fail=UpstreamUnavailable("model server m failed mid-stream"))
    events = await _events(_answerer(chat), include_usage=False)
    assert events[-1] == "data: [DONE]\n\n"
    error = json.loads(events[-2][6:])["error"]
    assert error["type"] == "upstream_unavailable" and "mid-stream" in error["message"]


async def test_an_unexpected_failure_does_not_leak_internals() -> None:
    chat = FakeChat([], fail=KeyError("secret internal detail"))
    events = await _events(_answerer(chat), include_usage=False)
    assert json.loads(events[-2][6:])["error"]["message"] == "internal server error"
    assert "secret" not in "".join(events)

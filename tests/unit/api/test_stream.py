"""The SSE relay: redacted deltas, citations, usage last and only when asked, errors as
one event. The upstream is a scripted stand-in; the firewall is the real one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from acl.models import Principal
from api.answer_cache import CachedAnswer
from api.chat.prepared import PreparedAnswer
from api.chat.protocol import Citation
from api.chat.service import Answerer
from core.errors import UpstreamUnavailable
from core.settings import Settings
from inference.firewall import PiiFirewall, Policy
from inference.router import Route


class Upstream:
    def __init__(self, chunks: list[dict[str, Any]], fail: Exception | None = None):
        self.chunks = chunks
        self.fail = fail
        self.closed = False
        self.busy_s = 0.25  # as UpstreamStream: its share of the replica's busy time

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in self.chunks:
            yield chunk
        if self.fail:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    return Answerer(
        retriever=None,  # type: ignore[arg-type]
        router=None,  # type: ignore[arg-type]
        gateway=None,  # type: ignore[arg-type]
        firewall=PiiFirewall(),
        settings=Settings(),
    )


def _prepared(policy: Policy = "redact") -> PreparedAnswer:
    citation = Citation(doc_id="d", chunk_no=0, score=0.9)
    principal = Principal(tenant="acme", user_id="u")
    return PreparedAnswer(
        Route("small", "m", "alias"), {"messages": []}, [citation], principal, policy
    )


def _delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


USAGE = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


async def _events(
    answerer: Answerer, upstream: Upstream, *, include_usage: bool, policy: Policy = "redact"
) -> list[dict[str, Any]]:
    events = [
        e
        async for e in answerer.stream_sse(
            _prepared(policy),
            upstream,  # type: ignore[arg-type]
            include_usage=include_usage,
        )
    ]
    assert events[-1] == "data: [DONE]\n\n"
    return [json.loads(e[6:]) for e in events[:-1]]


def _text(payloads: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for p in payloads for choice in p.get("choices", [])
    )


async def test_stream_ends_with_citations_then_done_and_hides_usage_unless_asked(
    answerer: Answerer,
) -> None:
    upstream = Upstream([_delta("Hel"), _delta("lo"), _delta("", "stop"), USAGE])
    payloads = await _events(answerer, upstream, include_usage=False)
    assert _text(payloads) == "Hello"
    assert payloads[-1]["headwater"]["citations"][0]["doc_id"] == "d"
    assert all("usage" not in p for p in payloads) and upstream.closed


async def test_usage_chunk_is_relayed_last_when_the_client_asks(answerer: Answerer) -> None:
    upstream = Upstream([_delta("x", "stop"), USAGE])
    payloads = await _events(answerer, upstream, include_usage=True)
    assert payloads[-1]["usage"] == USAGE["usage"] and payloads[-1]["choices"] == []
    assert "headwater" in payloads[-2]


async def test_an_email_split_across_chunks_never_leaves_whole_or_in_part(
    answerer: Answerer,
) -> None:
    parts = ["Mail jane", ".do", "e@exa", "mple.com", " today", ""]
    chunks = [_delta(p, "stop" if n == len(parts) - 1 else None) for n, p in enumerate(parts)]
    payloads = await _events(answerer, Upstream(chunks), include_usage=False)
    text = _text(payloads)
    assert text == "Mail [EMAIL_ADDRESS] today"
    for payload in payloads:
        for choice in payload.get("choices", []):
            content = choice["delta"].get("content") or ""
            assert not any(piece in content for piece in ("jane", "doe", "exa", "mple"))


async def test_block_policy_ends_the_stream_with_content_filter(answerer: Answerer) -> None:
    upstream = Upstream([_delta("ok then "), _delta("jane.doe@example.com "), _delta("more")])
    payloads = await _events(answerer, upstream, include_usage=False, policy="block")
    assert "jane" not in _text(payloads) and "more" not in _text(payloads)
    reasons = [c.get("finish_reason") for p in payloads for c in p.get("choices", [])]
    assert "content_filter" in reasons and upstream.closed


async def test_a_failure_mid_stream_sends_one_error_event_then_done(answerer: Answerer) -> None:
    upstream = Upstream([_delta("par")], fail=UpstreamUnavailable("model server m failed"))
    payloads = await _events(answerer, upstream, include_usage=False)
    error = payloads[-1]["error"]
    assert error["type"] == "upstream_unavailable" and "failed" in error["message"]


async def test_an_unexpected_failure_does_not_leak_internals(answerer: Answerer) -> None:
    payloads = await _events(
        answerer, Upstream([], fail=KeyError("secret internal detail")), include_usage=False
    )
    assert payloads[-1]["error"]["message"] == "internal server error"
    assert "secret" not in json.dumps(payloads)


async def test_text_held_back_is_released_on_a_final_chunk_with_an_empty_delta(
    answerer: Answerer,
) -> None:
    """An upstream may end with ``"delta": {}``: what the redactor still held (here the
    start of a possible email address) goes out with that chunk, not lost."""
    final = {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    payloads = await _events(
        answerer, Upstream([_delta("Write to jane"), final]), include_usage=False
    )
    assert _text(payloads) == "Write to jane"


async def test_a_cache_hit_streams_in_pieces_through_the_output_firewall(
    answerer: Answerer,
) -> None:
    content = "The contact for travel plans is jane.doe@example.com, as of this week."
    prepared = _prepared()
    prepared.cached = CachedAnswer(
        content=content,
        finish_reason="stop",
        model="m",
        prompt_tokens=40,
        completion_tokens=12,
        chunks=[("d", 0, 3)],
    )
    prepared.cache_outcome = "hit"
    events = [
        e
        async for e in answerer.stream_sse(
            prepared, await answerer.open_stream(prepared), include_usage=True
        )
    ]
    assert events[-1] == "data: [DONE]\n\n"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    pieces = [p for p in payloads if p.get("choices") and p["choices"][0]["delta"].get("content")]
    assert len(pieces) > 2  # a stream, not one blob
    text = _text(payloads)
    assert "jane.doe@example.com" not in text and "[EMAIL_ADDRESS]" in text
    assert text == content.replace("jane.doe@example.com", "[EMAIL_ADDRESS]")
    assert payloads[-2]["headwater"]["cache"] == {"outcome": "hit", "saved_tokens": 52}
    assert payloads[-1]["usage"]["total_tokens"] == 0  # no model was called

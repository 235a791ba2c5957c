"""The OpenAI-compatible backend client against a real vLLM server (CPU build)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.errors import InvalidRequest
from deploy.stack import LLM_MODEL_NAME
from inference.pool import BackendPools, TierPool
from inference.service import ChatGateway
from inference.vllm import OpenAIBackend

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Name one colour of the sky."}]


@pytest.fixture
async def backend(llm_url: str) -> AsyncIterator[OpenAIBackend]:
    client = OpenAIBackend(base_url=llm_url, model=LLM_MODEL_NAME, timeout_s=120)
    yield client
    await client.aclose()


async def test_completion_returns_text_and_usage(backend: OpenAIBackend) -> None:
    assert await backend.healthy()
    result = await backend.complete(
        {"model": LLM_MODEL_NAME, "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    )
    assert result["choices"][0]["message"]["content"].strip()
    assert 0 < result["usage"]["completion_tokens"] <= 16


async def test_stream_ends_with_usage_that_matches_the_chunks(backend: OpenAIBackend) -> None:
    pool = TierPool("small", [backend], max_inflight=4, queue_max=0, queue_timeout_s=1)
    gateway = ChatGateway(BackendPools({"small": pool}, health_interval_s=60))
    stream, served = await gateway.open_stream(
        "small", {"messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text.strip() and served.model == LLM_MODEL_NAME
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
    assert pool.replicas[0].outstanding == 0


async def test_a_request_vllm_rejects_becomes_an_invalid_request(backend: OpenAIBackend) -> None:
    with pytest.raises(InvalidRequest):
        await backend.complete(
            {"model": LLM_MODEL_NAME, "messages": MESSAGES, "max_tokens": 10_000_000}
        )


async def test_unreachable_server_is_reported_as_unhealthy() -> None:
    unreachable = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="x", timeout_s=1)
    assert not await unreachable.healthy()
    await unreachable.aclose()

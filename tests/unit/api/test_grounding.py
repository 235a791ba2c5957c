"""Grounded answers: with nothing readable above the relevance floor, the default policy
refuses without calling a model (streamed or not); ``answer`` lets the model speak; the
citations are the sources the answer used. The retriever and gateway are stand-ins of
our own; the firewall is the real one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from acl.filter import PermissionFilter
from acl.models import DocumentAcl, Principal
from api.chat.grounding import REFUSAL, REFUSED_REASON, relevant, used_citations
from api.chat.protocol import ChatCompletionRequest, Citation
from api.chat.service import Answerer
from core.settings import Settings
from inference.firewall import PiiFirewall
from inference.router import ModelRouter, Route
from retrieval.query import SearchResult
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import Hit

BOB = Principal(tenant="acme", user_id="bob@acme.com", groups=("eng",))


def _hit(doc_id: str, score: float, text: str = "Band A: 50k") -> Hit:
    document = DocumentFields(tenant="acme", doc_id=doc_id, version=1, acl=DocumentAcl())
    return Hit(id=doc_id, score=score, chunk=StoredChunk(document, 0, text))


class Retriever:
    def __init__(self, hits: list[Hit]):
        self.hits = hits

    async def retrieve(self, question: str, *, permission: PermissionFilter, top_k: int) -> Any:
        return SearchResult(hits=self.hits[:top_k], query_vector=[384**-0.5] * 384)


class Gateway:
    """Counts calls: a refusal must make none."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, tier: str, body: dict[str, Any]) -> Any:
        self.calls += 1
        answer = {"role": "assistant", "content": "Band A is 50k [1]."}
        return {"choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]}, None

    async def open_stream(self, tier: str, body: dict[str, Any]) -> Any:
        self.calls += 1
        raise AssertionError("not reached in these tests")


class Router(ModelRouter):
    def __init__(self) -> None:
        pass

    def route(self, requested: str, signals: Any = None) -> Route:
        return Route("small", "tiny", "alias")

    def wants_embedding(self, requested: str) -> bool:
        return False


def _answerer(hits: list[Hit], gateway: Gateway, **settings: Any) -> Answerer:
    return Answerer(
        retriever=Retriever(hits),  # type: ignore[arg-type]
        router=Router(),
        gateway=gateway,  # type: ignore[arg-type]
        firewall=PiiFirewall(),
        settings=Settings(**settings),
    )


def _ask(question: str = "What are the 2026 salary bands?", **extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "small", "messages": [{"role": "user", "content": question}]} | extra
    )


def test_only_hits_at_or_above_the_floor_ground_an_answer() -> None:
    hits = [_hit("a", 0.6), _hit("b", 0.25), _hit("c", 0.1)]
    assert [h.doc_id for h in relevant(hits, min_score=0.25)] == ["a", "b"]


def test_citations_are_the_sources_the_answer_cites() -> None:
    citations = [Citation(doc_id=d, chunk_no=0, score=0.5) for d in ("a", "b", "c")]
    assert [c.doc_id for c in used_citations("See [3], and [1].", citations)] == ["a", "c"]
    unmarked = used_citations("No markers here.", citations)
    assert [c.doc_id for c in unmarked] == ["a", "b", "c"] and not any(c.used for c in unmarked)
    assert [c.doc_id for c in used_citations("[9] is out of range", citations)] == ["a", "b", "c"]


async def test_nothing_readable_is_refused_without_a_model_call() -> None:
    gateway = Gateway()
    answerer = _answerer([_hit("far", 0.05)], gateway)
    prepared = await answerer.prepare(BOB, _ask())
    assert prepared.refused and prepared.route.reason == REFUSED_REASON
    answer = await answerer.complete(prepared)
    assert gateway.calls == 0
    assert answer["choices"][0]["message"]["content"] == REFUSAL
    assert answer["headwater"]["citations"] == []
    assert answer["headwater"]["grounding"] == {"sources": 0, "refused": True}
    assert answer["usage"]["completion_tokens"] == 0


async def test_a_refusal_streams_as_a_stream() -> None:
    gateway = Gateway()
    answerer = _answerer([], gateway)
    prepared = await answerer.prepare(BOB, _ask(stream=True))
    upstream = await answerer.open_stream(prepared)
    events = [e async for e in answerer.stream_sse(prepared, upstream, include_usage=True)]
    assert gateway.calls == 0 and events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REFUSAL
    assert chunks[-2]["headwater"]["grounding"]["refused"] is True
    assert chunks[-1]["usage"]["total_tokens"] == 0


@pytest.mark.parametrize("policy", ["answer", "refuse"])
async def test_the_tenant_policy_decides(policy: str) -> None:
    gateway = Gateway()
    answerer = _answerer([], gateway, grounding_tenant_policies={"acme": policy})
    prepared = await answerer.prepare(BOB, _ask())
    assert prepared.refused == (policy == "refuse")
    await answerer.complete(prepared)
    assert gateway.calls == (1 if policy == "answer" else 0)


async def test_without_retrieval_nothing_is_refused() -> None:
    gateway = Gateway()
    answerer = _answerer([], gateway)
    prepared = await answerer.prepare(BOB, _ask(headwater={"retrieval": {"enabled": False}}))
    assert not prepared.refused


async def test_a_grounded_answer_lists_the_sources_it_cited() -> None:
    gateway = Gateway()
    answerer = _answerer([_hit("bands", 0.7), _hit("other", 0.5, "Other text")], gateway)
    prepared = await answerer.prepare(BOB, _ask())
    answer = await answerer.complete(prepared)
    assert [c["doc_id"] for c in answer["headwater"]["citations"]] == ["bands"]
    assert answer["headwater"]["grounding"] == {"sources": 2, "refused": False}
    assert len(prepared.chunks) == 2, "the audit keeps every chunk the model was shown"


async def test_pii_in_a_system_message_is_redacted_before_any_model_sees_it() -> None:
    answerer = _answerer([], Gateway())
    request = ChatCompletionRequest.model_validate(
        {
            "model": "small",
            "messages": [
                {"role": "system", "content": "Escalate to jane.doe@example.com."},
                {"role": "tool", "content": "card 4111 1111 1111 1111"},
                {"role": "user", "content": "hello"},
            ],
            "headwater": {"retrieval": {"enabled": False}},
        }
    )
    prepared = await answerer.prepare(BOB, request)
    sent = [m["content"] for m in prepared.body["messages"]]
    assert sent[0] == "Escalate to [EMAIL_ADDRESS]." and "4111" not in sent[1]
    assert prepared.findings["input:EMAIL_ADDRESS"] == 1


def _two_tier_router() -> ModelRouter:
    """The real router (learned scorer, calibrator) over two tiers nobody calls here."""
    from api.services import backend_pools
    from inference.scoring import AutoRouter

    settings = Settings(llm_large_url="http://127.0.0.1:9/v1", llm_large_model="big")
    return ModelRouter(backend_pools(settings), AutoRouter(0.2, 500))


async def test_the_router_reads_retrieval_s_embedding_and_its_signals() -> None:
    """The retrieval-aware wiring, end to end through the answerer: the question's vector
    from retrieval reaches the learned scorer (no second embedding), and a question whose
    retrieval found nothing gets the 'no hits' prior the policy documents, raising its
    score against the same question with a strong source."""
    scored = []
    for hits in ([_hit("bands", 0.8)], []):
        answerer = Answerer(
            retriever=Retriever(hits),  # type: ignore[arg-type]
            router=_two_tier_router(),
            gateway=Gateway(),  # type: ignore[arg-type]
            firewall=PiiFirewall(),
            settings=Settings(grounding_policy="answer"),
        )
        prepared = await answerer.prepare(BOB, _ask(model="auto"))
        decision = prepared.route.decision
        assert decision is not None and decision.features["embedding_missing"] == 0.0
        scored.append(decision)
    grounded, ungrounded = scored
    assert grounded.features["no_hits"] == 0.0 < ungrounded.features["no_hits"]
    assert ungrounded.score > grounded.score

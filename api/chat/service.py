"""Answers a chat request: the input firewall, ACL-filtered retrieval, a grounded prompt,
the routed tier's replicas, the output firewall (across stream chunks), citations.
Text never leaves through spans or logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from opentelemetry import trace

from acl.filter import PermissionFilter
from acl.models import Principal
from api.answer_cache import AnswerCache
from api.audit import ServedChunk
from api.budgets import BudgetGuard
from api.chat.cached import cached_chunks, cached_completion
from api.chat.controls import CostControls
from api.chat.grounding import (
    REFUSED_REASON,
    GroundingPolicy,
    refusal_chunks,
    refusal_completion,
    relevant,
)
from api.chat.prepared import PreparedAnswer
from api.chat.prompt import fit_sources, system_prompt
from api.chat.protocol import ChatCompletionRequest, Citation
from api.chat.streaming import relay_sse
from core.errors import InvalidRequest, UpstreamUnavailable
from core.metrics import ROUTE_DECISIONS, ROUTER_SCORE
from core.settings import Settings
from inference.firewall import Finding, PiiFirewall, Policy, record
from inference.router import ModelRouter, Route
from inference.scoring import RouteSignals
from inference.service import ChatGateway, UpstreamStream
from inference.tokens import TokenCounter, Utf8Bound
from inference.vllm import JSON
from retrieval.schema import Hit
from retrieval.service import Retriever

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.api")
PASSED_THROUGH = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
)


class Answerer:
    def __init__(
        self,
        *,
        retriever: Retriever,
        router: ModelRouter,
        gateway: ChatGateway,
        firewall: PiiFirewall,
        settings: Settings,
        tokens: TokenCounter | None = None,
        budgets: BudgetGuard | None = None,
        cache: AnswerCache | None = None,
    ):
        self._retriever = retriever
        self._router = router
        self._gateway = gateway
        self._firewall = firewall
        self._settings = settings
        self._tokens = tokens or Utf8Bound()
        self._controls = CostControls(settings, self._tokens, budgets=budgets, cache=cache)

    def grounding(self, principal: Principal) -> GroundingPolicy:
        """The tenant's answer when nothing readable grounds the question."""
        return self._settings.grounding_tenant_policies.get(
            principal.tenant, self._settings.grounding_policy
        )

    def policy(self, principal: Principal) -> Policy:
        return self._settings.firewall_tenant_policies.get(
            principal.tenant, self._settings.firewall_policy
        )

    async def prepare(
        self, principal: Principal, request: ChatCompletionRequest, *, fresh: bool = False
    ) -> PreparedAnswer:
        """Everything up to the model call: firewall, retrieval, prompt, route, the cache
        (skipped for a lookup with ``fresh``: the client sent ``Cache-Control: no-cache``)
        and, unless the cache answers, the budget reservation."""
        max_tokens = (
            request.max_completion_tokens or request.max_tokens or self._settings.llm_max_tokens
        )
        policy = self.policy(principal)
        messages, findings = self._screen_input(request, policy)
        retrieved, question_vector = await self._retrieve(principal, request, messages)
        hits = relevant(retrieved, min_score=self._settings.grounding_min_score)
        prompt_tokens = sum(self._tokens.count(m["content"]) for m in messages)
        budget = self._settings.llm_context_tokens - max_tokens - prompt_tokens - 128
        if budget < 0:
            raise InvalidRequest(
                f"messages plus max_tokens exceed the {self._settings.llm_context_tokens}-token "
                "context window; shorten the conversation or lower max_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        sources = fit_sources(hits, budget_tokens=budget, tokens=self._tokens)
        signals = RouteSignals.from_messages(
            [(m["role"], m["content"]) for m in messages],
            hits=len(hits),
            top_score=retrieved[0].score if retrieved else None,
            context_tokens=sum(self._tokens.count(h.chunk.text) for h in sources),
            retrieval=request.headwater.retrieval.enabled,
            embedding=await self._question_vector(request.model, messages, question_vector),
        )
        route = self._route(request.model, signals)
        refused = signals.retrieval and not sources and self.grounding(principal) == "refuse"
        if refused:
            route = Route(route.tier, route.model, REFUSED_REASON)
        # Without retrieval the gateway passes the conversation through as it came.
        grounding = [{"role": "system", "content": system_prompt(sources)}]
        body: JSON = {
            "messages": [*grounding, *messages] if signals.retrieval else messages,
            "max_tokens": max_tokens,
        }
        for key in PASSED_THROUGH:
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        prepared = PreparedAnswer(
            route,
            body,
            [_citation(hit) for hit in sources],
            principal,
            policy,
            chunks=[ServedChunk.of(hit) for hit in sources],
            refused=refused,
            prices=self._controls.prices,
        )
        prepared.note("input", findings)
        if not refused:  # the cache, then (unless it answers) the budget reservation
            await self._controls.before_model(prepared, request, question_vector, fresh=fresh)
        return prepared

    def _screen_input(
        self, request: ChatCompletionRequest, policy: Policy
    ) -> tuple[list[dict[str, str]], list[Finding]]:
        """Every message, whatever its role (system, developer and tool messages reach the
        model as surely as user ones), through the firewall before any model sees it."""
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        found: list[Finding] = []
        with _tracer.start_as_current_span("guardrail input"):
            for message in messages:
                verdict = self._firewall.apply(message["content"], policy)
                found.extend(verdict.findings)
                message["content"] = verdict.text
            record("input", found, policy)
        if found and policy == "block":
            kinds = ", ".join(sorted({finding.entity for finding in found}))
            raise InvalidRequest(
                f"the request contains personal data or secrets ({kinds}) and this tenant's "
                "policy blocks it; remove them and retry",
                param="messages",
                code="content_filter",
            )
        return messages, found

    async def _retrieve(
        self,
        principal: Principal,
        request: ChatCompletionRequest,
        messages: list[dict[str, str]],
    ) -> tuple[list[Hit], list[float] | None]:
        """The caller's hits, and the question's embedding retrieval made (for the router:
        the same text is never embedded twice)."""
        options = request.headwater.retrieval
        question = _question(messages)
        if not options.enabled or not question.strip():
            return [], None
        top_k = min(
            options.top_k or self._settings.retrieval_top_k, self._settings.retrieval_max_top_k
        )
        permission = PermissionFilter.for_principal(principal, options.filter)
        result = await self._retriever.retrieve(question, permission=permission, top_k=top_k)
        return result.hits, result.query_vector

    async def _question_vector(
        self, requested: str, messages: list[dict[str, str]], retrieved: list[float] | None
    ) -> list[float] | None:
        """The embedding the learned router reads: retrieval's, or (retrieval off, model
        ``auto`` with a large tier to choose) one made now (BENCHMARKS.md: its cost)."""
        if retrieved is not None or not self._router.wants_embedding(requested):
            return retrieved
        question = _question(messages)
        return await self._retriever.embed_query(question) if question.strip() else None

    def _route(self, requested: str, signals: RouteSignals) -> Route:
        with _tracer.start_as_current_span("route") as span:
            route = self._router.route(requested, signals)
            attributes: dict[str, Any] = {
                "headwater.route.requested": requested,
                "headwater.route.tier": route.tier,
                "headwater.route.model": route.model,
                "headwater.route.reason": route.reason,
            }
            if route.decision is not None:
                attributes.update(route.decision.span_attributes())
                ROUTER_SCORE.observe(route.decision.score)
            span.set_attributes(attributes)
            ROUTE_DECISIONS.labels(route.tier, route.reason).inc()
            return route

    async def complete(self, prepared: PreparedAnswer) -> JSON:
        if prepared.refused:
            return refusal_completion(prepared.model, prepared.extension())
        if prepared.cached is not None:  # a hit: the output firewall still applies
            hit = cached_completion(prepared.cached)
            self._screen_output(prepared, hit)
            return {**hit, "headwater": prepared.extension(_answer_text(hit))}
        reached = True
        try:
            result, prepared.served = await self._gateway.complete(
                prepared.route.tier, prepared.body
            )
            prepared.meter(result.get("usage"))
        except UpstreamUnavailable:
            reached = False  # no model server answered: nothing was generated
            raise
        finally:
            busy_s = prepared.served.busy_s if prepared.served else 0.0
            await asyncio.shield(self._controls.finish(prepared, busy_s=busy_s, reached=reached))
        self._screen_output(prepared, result)
        choices = result.get("choices") or [{}]
        await self._controls.remember(
            prepared, _answer_text(result), choices[0].get("finish_reason")
        )
        return {**result, "headwater": prepared.extension(_answer_text(result))}

    def _screen_output(self, prepared: PreparedAnswer, result: JSON) -> None:
        with _tracer.start_as_current_span("guardrail output"):
            found: list[Finding] = []
            for choice in result.get("choices") or []:
                message = choice.get("message") or {}
                if not isinstance(message.get("content"), str):
                    continue
                verdict = self._firewall.apply(message["content"], prepared.policy)
                found.extend(verdict.findings)
                if verdict.action == "blocked":
                    message["content"] = ""
                    choice["finish_reason"] = "content_filter"
                else:
                    message["content"] = verdict.text
            record("output", found, prepared.policy)
            prepared.note("output", found)

    async def open_stream(self, prepared: PreparedAnswer) -> UpstreamStream | None:
        """The upstream stream, started (its first chunk in hand): failures before the
        first token were retried on other replicas or the other tier, and what answered
        is recorded on ``prepared.served``. None for a refusal (no model is called)."""
        if prepared.refused or prepared.cached is not None:
            return None
        try:
            upstream, prepared.served = await self._gateway.open_stream(
                prepared.route.tier, prepared.body
            )
        except BaseException as exc:
            # No model answered (released), or the wait was cut short (the worst case).
            reached = not isinstance(exc, UpstreamUnavailable)
            await asyncio.shield(self._controls.finish(prepared, busy_s=0.0, reached=reached))
            raise
        return upstream

    def stream_sse(
        self, prepared: PreparedAnswer, upstream: UpstreamStream | None, *, include_usage: bool
    ) -> AsyncGenerator[str]:
        """Server-sent events for a started stream (api.chat.streaming), or the refusal's."""
        chunks = upstream or (
            cached_chunks(prepared.cached, include_usage=include_usage)
            if prepared.cached is not None
            else refusal_chunks(prepared.model, include_usage=include_usage)
        )
        events = relay_sse(
            prepared, chunks, self._firewall.stream(prepared.policy), include_usage=include_usage
        )
        if upstream is None:
            return events
        return self._controls.settled_stream(prepared, upstream, events)


def _question(messages: list[dict[str, str]]) -> str:
    """The last user message (after the input firewall)."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def _answer_text(result: JSON) -> str:
    choices = result.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def _citation(hit: Hit) -> Citation:
    return Citation(
        doc_id=hit.doc_id,
        chunk_no=hit.chunk_no,
        title=hit.chunk.title,
        uri=hit.chunk.uri,
        score=round(hit.score, 4),
    )

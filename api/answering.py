"""Answers a chat request: ACL-filtered retrieval, a grounded prompt, routed generation,
citations. Text never leaves through spans or logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from acl.filter import PermissionFilter
from acl.models import Principal
from api.audit import ServedChunk
from api.errors import error_body
from api.prompt import CHARS_PER_TOKEN, fit_sources, system_prompt
from core.errors import HeadwaterError, InvalidRequest
from core.metrics import ROUTE_DECISIONS, TOKENS
from core.settings import Settings
from inference.models import ChatCompletionRequest, Citation
from inference.router import ModelRouter, Route
from inference.service import ChatService
from inference.vllm import JSON
from retrieval.schema import Hit
from retrieval.service import Retriever

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.api")


@dataclass(frozen=True)
class PreparedAnswer:
    route: Route
    body: JSON
    citations: list[Citation]
    principal: Principal | None = None
    served: list[ServedChunk] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)

    def meter(self, usage: dict[str, Any] | None) -> None:
        """Count the tokens the model server reported, for chargeback and the audit."""
        if not usage:
            return
        self.usage.update(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
        if self.principal is None:
            return
        labels = (
            self.principal.tenant,
            self.principal.department or "none",
            self.route.backend.model,
        )
        TOKENS.labels(*labels, "prompt").inc(int(usage.get("prompt_tokens", 0)))
        TOKENS.labels(*labels, "completion").inc(int(usage.get("completion_tokens", 0)))

    def extension(self) -> dict[str, Any]:
        """The ``headwater`` object added to responses."""
        return {
            "citations": [c.model_dump() for c in self.citations],
            "route": {
                "tier": self.route.tier,
                "model": self.route.backend.model,
                "reason": self.route.reason,
            },
        }


class Answerer:
    def __init__(
        self, *, retriever: Retriever, router: ModelRouter, chat: ChatService, settings: Settings
    ):
        self._retriever = retriever
        self._router = router
        self._chat = chat
        self._settings = settings

    async def prepare(self, principal: Principal, request: ChatCompletionRequest) -> PreparedAnswer:
        max_tokens = (
            request.max_completion_tokens or request.max_tokens or self._settings.llm_max_tokens
        )
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        hits = await self._retrieve(principal, request)
        prompt_tokens = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
        budget = self._settings.llm_context_tokens - max_tokens - prompt_tokens - 128
        if budget < 0:
            raise InvalidRequest(
                f"messages plus max_tokens exceed the {self._settings.llm_context_tokens}-token "
                "context window; shorten the conversation or lower max_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        sources = fit_sources(hits, budget_tokens=budget)
        route = self._route(request.model)
        body: JSON = {
            "messages": [{"role": "system", "content": system_prompt(sources)}, *messages],
            "max_tokens": max_tokens,
        }
        for key in ("temperature", "top_p", "stop", "seed"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        return PreparedAnswer(
            route,
            body,
            [_citation(hit) for hit in sources],
            principal,
            served=[ServedChunk.of(hit) for hit in sources],
        )

    async def _retrieve(self, principal: Principal, request: ChatCompletionRequest) -> list[Hit]:
        options = request.headwater.retrieval
        if not options.enabled:
            return []
        question = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
        if not question.strip():
            return []
        top_k = min(
            options.top_k or self._settings.retrieval_top_k, self._settings.retrieval_max_top_k
        )
        permission = PermissionFilter.for_principal(principal, options.filter)
        return await self._retriever.search(question, permission=permission, top_k=top_k)

    def _route(self, requested: str) -> Route:
        with _tracer.start_as_current_span("route") as span:
            route = self._router.route(requested)
            span.set_attribute("headwater.route.requested", requested)
            span.set_attribute("headwater.route.tier", route.tier)
            span.set_attribute("headwater.route.model", route.backend.model)
            span.set_attribute("headwater.route.reason", route.reason)
            ROUTE_DECISIONS.labels(route.tier, route.reason).inc()
            return route

    async def complete(self, prepared: PreparedAnswer) -> JSON:
        result = await self._chat.complete(prepared.route, prepared.body)
        prepared.meter(result.get("usage"))
        return {**result, "headwater": prepared.extension()}

    async def stream_sse(
        self, prepared: PreparedAnswer, *, include_usage: bool
    ) -> AsyncIterator[str]:
        """Server-sent events: upstream chunks, a last chunk with citations, ``[DONE]``.

        A failure mid-stream sends one error event, then ``[DONE]``.
        """
        last: JSON = {}
        try:
            async for chunk in self._chat.stream(prepared.route, prepared.body):
                last = chunk
                prepared.meter(chunk.get("usage"))
                if chunk.get("usage") and not chunk.get("choices") and not include_usage:
                    continue
                if not include_usage:
                    chunk.pop("usage", None)
                yield _sse(chunk)
            yield _sse(
                {
                    "id": last.get("id"),
                    "object": "chat.completion.chunk",
                    "created": last.get("created"),
                    "model": last.get("model"),
                    "choices": [],
                    "headwater": prepared.extension(),
                }
            )
        except HeadwaterError as exc:
            yield _sse(
                error_body(exc.message, error_type=exc.error_type, param=exc.param, code=exc.code)
            )
        except Exception:
            _log.exception("chat stream failed after it started")
            yield _sse(error_body("internal server error", error_type="server_error"))
        yield "data: [DONE]\n\n"


def _sse(payload: JSON) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _citation(hit: Hit) -> Citation:
    return Citation(
        doc_id=hit.doc_id,
        chunk_no=hit.chunk_no,
        title=hit.payload.get("title"),
        uri=hit.payload.get("uri"),
        score=round(hit.score, 4),
    )

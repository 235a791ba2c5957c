"""The chat path's cost controls: the answer cache (asked once the caller's own retrieval
has made the prompt), the budget reservation (unless the cache answers), and, when an
answer is done, its cost and GPU-seconds metered and its reservation settled
(``api.answer_cache``, ``api.budgets``, ``api.cost``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from acl.models import Principal
from api.answer_cache import AnswerCache, CachedAnswer, CachePolicy, cache_keys, count_outcome
from api.budgets import BudgetGuard, worst_prompt_tokens
from api.chat.prepared import PreparedAnswer
from api.chat.protocol import ChatCompletionRequest
from api.cost import PriceTable, as_currency
from api.usage import meter_cost
from core.errors import HeadwaterError
from core.settings import Settings
from inference.service import UpstreamStream
from inference.tokens import TokenCounter

_log = logging.getLogger(__name__)


class CostControls:
    """Budgets, the answer cache and cost metering for ``api.chat.service.Answerer``."""

    def __init__(
        self,
        settings: Settings,
        tokens: TokenCounter,
        *,
        budgets: BudgetGuard | None,
        cache: AnswerCache | None,
    ):
        self._settings = settings
        self._tokens = tokens
        self._budgets = budgets
        self._cache = cache
        self.prices = PriceTable(settings.model_prices)
        # Every model a request may be served by (a failing tier falls back to the other).
        self._served_models = sorted(
            {settings.llm_small_model, settings.llm_large_model or settings.llm_small_model}
        )
        self._settling: set[asyncio.Task[None]] = set()

    async def before_model(
        self,
        prepared: PreparedAnswer,
        request: ChatCompletionRequest,
        question_vector: list[float] | None,
        *,
        fresh: bool,
    ) -> None:
        """Ask the cache (unless ``fresh``); without a hit, reserve the worst case on the
        caller's budgets (``BudgetExceeded`` when it does not fit)."""
        if self._cache is not None:
            await self._look_up(prepared, request, question_vector, fresh=fresh)
        if self._budgets is None or prepared.cached is not None:
            return
        prepared.reservation = await self._budgets.reserve(
            prepared.principal,
            prompt_tokens=worst_prompt_tokens(
                self._tokens,
                prepared.body["messages"],
                template_tokens=self._settings.budget_template_tokens,
            ),
            max_tokens=int(prepared.body["max_tokens"]),
            models=self._served_models,
        )

    def cache_policy(self, principal: Principal) -> CachePolicy:
        """The tenant's answer cache: off, exact or semantic."""
        return self._settings.answer_cache_tenant_policies.get(
            principal.tenant, self._settings.answer_cache
        )

    async def _look_up(
        self,
        prepared: PreparedAnswer,
        request: ChatCompletionRequest,
        question_vector: list[float] | None,
        *,
        fresh: bool,
    ) -> None:
        """Ask the cache, after the caller's own retrieval made the prompt (its sources by
        id and version are in the key: api.answer_cache). A store failure is a miss."""
        assert self._cache is not None
        principal = prepared.principal
        policy = self.cache_policy(principal)
        if policy == "off":
            return
        single_turn = (
            policy == "semantic"
            and len(request.messages) == 1
            and request.messages[0].role == "user"
        )
        prepared.cache_keys = cache_keys(
            tenant=principal.tenant,
            model=prepared.route.model,
            body=prepared.body,
            chunks=prepared.chunks,
            single_turn=single_turn,
        )
        prepared.question_vector = question_vector if single_turn else None
        prepared.cache_outcome = "bypass" if fresh else "miss"
        if not fresh:
            try:
                prepared.cached, prepared.cache_outcome = await self._cache.lookup(
                    prepared.cache_keys, question_vector=prepared.question_vector
                )
            except HeadwaterError:
                _log.warning("the answer cache is unavailable; answering without it")
        count_outcome(principal.tenant, prepared.cache_outcome, prepared.cached)

    async def remember(self, prepared: PreparedAnswer, content: str, finish: str | None) -> None:
        """Cache an answer the model made in full (not one cut short or blocked)."""
        keys = prepared.cache_keys
        if self._cache is None or keys is None or prepared.cached is not None:
            return
        if finish not in ("stop", "length") or not prepared.usage:
            return
        answer = CachedAnswer(
            content=content,
            finish_reason=finish,
            model=prepared.model,
            prompt_tokens=prepared.usage.get("prompt_tokens", 0),
            completion_tokens=prepared.usage.get("completion_tokens", 0),
            chunks=[(c.doc_id, c.chunk_no, c.version) for c in prepared.chunks],
            question_vector=prepared.question_vector,
        )
        try:
            await self._cache.store(keys, answer)
        except HeadwaterError:
            _log.warning("the answer cache is unavailable; an answer was not cached")

    async def settled_stream(
        self, prepared: PreparedAnswer, upstream: UpstreamStream, events: AsyncGenerator[str]
    ) -> AsyncGenerator[str]:
        """``events``, then the answer's cost, GPU time and budget settled (also when the
        client leaves mid-stream: the settlement runs on, shielded, in a task)."""
        finished = False
        try:
            async for event in events:
                yield event
            finished = True
        finally:
            await events.aclose()  # closes the upstream stream: its busy share is known
            settling = asyncio.ensure_future(
                self.finish(prepared, busy_s=upstream.busy_s, reached=True)
            )
            self._settling.add(settling)
            settling.add_done_callback(self._settling.discard)
            await asyncio.shield(settling)
        if finished and prepared.sent is not None:
            await self.remember(prepared, prepared.sent, prepared.finish_reason)

    async def finish(self, prepared: PreparedAnswer, *, busy_s: float, reached: bool) -> None:
        """Count the answer's cost and GPU-seconds, and settle its budget reservation (to
        the reported tokens; with none reported after a model was reached, to the worst
        case). A store failure here is logged: the answer is already made, and the
        reservation expires by itself."""
        prepared.gpu_seconds = busy_s
        if reached:
            meter_cost(
                prepared.principal,
                model=prepared.model,
                cost=as_currency(prepared.cost_nanos),
                gpu_seconds=busy_s,
            )
        reservation, budgets = prepared.reservation, self._budgets
        if reservation is None or budgets is None:
            return
        try:
            if reached:
                await budgets.settle(reservation, model=prepared.model, usage=prepared.usage)
            else:
                await budgets.release(reservation)
        except HeadwaterError:
            _log.exception("a budget reservation could not be settled (it will expire)")

"""The answer cache, safe by construction.

The caller's own ACL-filtered retrieval runs first; only then is the cache asked, and its
key holds everything an answer was made from: the tenant, the routed model, the
generation parameters, the exact upstream messages (the grounded system prompt and the
whole conversation, after the input firewall) and the sources in the prompt by chunk id
*and version*. So a hit is possible only when this caller's retrieval returned the same
chunks at the same versions — nothing it could not read — and any edit, deletion or ACL
change of a source (each bumps its version) makes its answers unreachable by itself.
An earlier turn of one user's conversation cannot reach another user: a hit needs every
message to be equal.

Then, for single-turn questions only (``semantic`` policy), a near match: among the
answers made from the same sources with the same parameters, the one whose question's
embedding is closest, if its cosine reaches ``answer_cache_similarity``.

Entries live in the shared store (Redis), so every API replica reads the same cache.
Stored is what the client was sent (after the output firewall); hits go through the
output firewall again and are audited, marked as hits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from api.audit import ServedChunk
from core.metrics import CACHE_REQUESTS, CACHE_SAVED_TOKENS

CachePolicy = Literal["off", "exact", "semantic"]
CacheOutcome = Literal["hit", "semantic_hit", "miss", "bypass"]
_SEMANTIC_CANDIDATES = 16  # near-match candidates kept per sources-and-parameters bucket


class CacheStore(Protocol):
    """Where entries live (``core.redis_store.SharedStore``)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, *, ttl_s: int) -> None: ...

    async def recent(self, key: str) -> list[bytes]: ...

    async def remember(self, key: str, value: bytes, *, keep: int, ttl_s: int) -> None: ...


@dataclass(frozen=True)
class CachedAnswer:
    """An answer as it was sent, and what it was made from."""

    content: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    chunks: list[tuple[str, int, int]]  # (doc_id, chunk_no, version) of its sources
    question_vector: list[float] | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> CachedAnswer:
        data = json.loads(value)
        data["chunks"] = [tuple(chunk) for chunk in data["chunks"]]
        return cls(**data)


@dataclass(frozen=True)
class CacheKeys:
    exact: str
    semantic: str | None  # None: not a single-turn question (or no question embedding)


def _digest(material: dict[str, Any]) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_keys(
    *,
    tenant: str,
    model: str,
    body: dict[str, Any],
    chunks: Sequence[ServedChunk],
    single_turn: bool,
) -> CacheKeys:
    """The keys of an answer to ``body`` (the upstream request) on ``model``."""
    sources = [[c.doc_id, c.chunk_no, c.version] for c in chunks]
    params = {name: value for name, value in body.items() if name != "messages"}
    messages = body["messages"]
    base = {"tenant": tenant, "model": model, "params": params, "sources": sources}
    exact = _digest({**base, "messages": messages})
    semantic = None
    if single_turn:
        # Everything but the question: the grounded system prompt (made of the sources).
        semantic = _digest({**base, "context": messages[:-1]})
    prefix = f"headwater:cache:{{{tenant}}}"
    return CacheKeys(f"{prefix}:x:{exact}", f"{prefix}:s:{semantic}" if semantic else None)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class AnswerCache:
    """Looks answers up and stores them (see the module docstring)."""

    def __init__(self, store: CacheStore, *, ttl_s: int, similarity: float):
        self._store = store
        self._ttl_s = ttl_s
        self._similarity = similarity

    async def lookup(
        self, keys: CacheKeys, *, question_vector: Sequence[float] | None
    ) -> tuple[CachedAnswer | None, CacheOutcome]:
        """The cached answer for ``keys``: exact, else (with a semantic key and the
        question's embedding) the nearest question's over the threshold."""
        value = await self._store.get(keys.exact)
        if value is not None:
            return CachedAnswer.from_bytes(value), "hit"
        if keys.semantic is None or question_vector is None:
            return None, "miss"
        best: tuple[float, CachedAnswer] | None = None
        for raw in await self._store.recent(keys.semantic):
            candidate = CachedAnswer.from_bytes(raw)
            if candidate.question_vector is None:
                continue
            score = _cosine(question_vector, candidate.question_vector)
            if score >= self._similarity and (best is None or score > best[0]):
                best = (score, candidate)
        return (best[1], "semantic_hit") if best else (None, "miss")

    async def store(self, keys: CacheKeys, answer: CachedAnswer) -> None:
        await self._store.put(keys.exact, answer.to_bytes(), ttl_s=self._ttl_s)
        if keys.semantic is not None and answer.question_vector is not None:
            await self._store.remember(
                keys.semantic, answer.to_bytes(), keep=_SEMANTIC_CANDIDATES, ttl_s=self._ttl_s
            )


def count_outcome(tenant: str, outcome: CacheOutcome, answer: CachedAnswer | None) -> None:
    CACHE_REQUESTS.labels(tenant, outcome).inc()
    if answer is not None:
        CACHE_SAVED_TOKENS.labels(tenant).inc(answer.prompt_tokens + answer.completion_tokens)

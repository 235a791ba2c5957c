"""The answer cache on a replay of repeated and paraphrased questions: hit rate and
wrong-hit rate per semantic threshold (the measurement that chooses
``HEADWATER_ANSWER_CACHE_SIMILARITY``).

    python -m bench.cache_replay [--thresholds 0.8,0.85,0.9,0.95] [--rounds 3]

The set (``INTENTS`` below) is documented here: each intent is a document of its own (a
public one, so every asker retrieves the same sources) and three phrasings of its
question; pairs of intents differ in one detail that changes the answer (a year, a role,
a verb) — the near misses a semantic cache must not confuse. Each round asks every
phrasing of every intent once, in a shuffled order, as one of several users, through the
real ``Answerer`` (firewall, retrieval on the embedded engine with the real embedding
model, prompt, router, the cache on a private Redis); the model server is a stand-in
that answers "answer to <intent>". A hit is wrong when the answer it served was made
for another intent. Reported per threshold: exact and semantic hit rates, the
wrong-hit rate (wrong hits / hits), the tokens hits saved, and the p50 time of a hit and
of a miss through ``prepare`` + ``complete`` (a miss's without the model's own time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from acl.models import DocumentAcl, Principal
from api.answer_cache import AnswerCache
from api.chat.protocol import ChatCompletionRequest
from api.chat.service import Answerer
from api.services import backend_pools
from core.redis_store import open_shared_store
from core.settings import Settings
from deploy.process import free_port
from deploy.redis import redis_process
from inference.firewall import PiiFirewall
from inference.pool import Tier
from inference.router import ModelRouter
from inference.scoring import AutoRouter
from inference.service import Served
from ingest.models import DocumentEvent
from ingest.runtime import build_writer
from retrieval.embedding import SentenceTransformerEmbedder
from retrieval.qdrant_edge import EdgeStore
from retrieval.service import Retriever

# intent -> (the document's text, three phrasings of its question)
INTENTS: dict[str, tuple[str, list[str]]] = {
    "travel-limit": (
        "Travel reimbursement: hotels up to 180 EUR a night, economy flights only.",
        [
            "What is the hotel limit for business travel?",
            "How much can I spend on a hotel when travelling for work?",
            "hotel reimbursement limit business trip",
        ],
    ),
    "parental-leave": (
        "Parental leave: 20 weeks fully paid for every parent, taken within two years.",
        [
            "How long is parental leave?",
            "How many weeks of parental leave do we get?",
            "parental leave duration",
        ],
    ),
    "vpn-setup": (
        "VPN setup: install the client from the portal and sign in with your SSO account.",
        [
            "How do I set up the VPN?",
            "How can I install and configure the VPN client?",
            "vpn installation steps",
        ],
    ),
    "password-reset": (
        "Forgotten password: use the reset link on the sign-in page; it expires in an hour.",
        [
            "How do I reset a forgotten password?",
            "I forgot my password, how can I reset it?",
            "password reset procedure",
        ],
    ),
    "password-change": (
        "Changing a known password: Settings, Security, Change password; every 90 days.",
        [
            "How do I change my password?",
            "Where can I update my current password?",
            "change password steps",
        ],
    ),
    "holidays-2025": (
        "Holiday calendar 2025: 12 public holidays, office closed 24-31 December 2025.",
        [
            "What are the public holidays in 2025?",
            "Which days are holidays in 2025?",
            "2025 holiday calendar",
        ],
    ),
    "holidays-2026": (
        "Holiday calendar 2026: 11 public holidays, office closed 23-31 December 2026.",
        [
            "What are the public holidays in 2026?",
            "Which days are holidays in 2026?",
            "2026 holiday calendar",
        ],
    ),
    "salary-engineer": (
        "Salary band for engineers: 60,000 to 95,000 EUR, reviewed every April.",
        [
            "What is the salary band for engineers?",
            "How much do engineers earn here?",
            "engineer salary range",
        ],
    ),
    "salary-manager": (
        "Salary band for managers: 80,000 to 130,000 EUR, reviewed every April.",
        [
            "What is the salary band for managers?",
            "How much do managers earn here?",
            "manager salary range",
        ],
    ),
    "expense-deadline": (
        "Expense reports are due by the fifth working day of the following month.",
        [
            "When are expense reports due?",
            "What is the deadline for submitting expenses?",
            "expense report deadline",
        ],
    ),
}
USERS = [f"user{i}" for i in range(4)]


class IntentNamingGateway:
    """A model server stand-in that answers which question it was asked."""

    def __init__(self, intents_by_question: dict[str, str]):
        self._intents = intents_by_question

    async def complete(self, tier: Tier, body: dict[str, Any]) -> tuple[dict[str, Any], Served]:
        question = body["messages"][-1]["content"]
        answer = {
            "id": "chatcmpl-replay",
            "object": "chat.completion",
            "model": "smollm2-135m-instruct",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": f"answer to {self._intents[question]}",
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360},
        }
        return answer, Served(tier, "smollm2-135m-instruct", "stand-in", 1)


async def replay(
    redis_url: str, embedder: SentenceTransformerEmbedder, similarity: float, rounds: int
) -> dict[str, Any]:
    tenant = f"replay-{uuid.uuid4().hex[:8]}"
    settings = Settings(collection="chunks", redis_url=redis_url, answer_cache="semantic")
    with tempfile.TemporaryDirectory() as root:
        store = EdgeStore(Path(root), alias="chunks")
        store.ensure_collection(dim=embedder.dim, model=embedder.model_name)
        writer = build_writer(settings, store=store, embedder=embedder)
        for intent, (text, _) in INTENTS.items():
            event = DocumentEvent(
                op="upsert", tenant=tenant, doc_id=intent, version=1,
                acl=DocumentAcl(public=True), text=text,
            )  # fmt: skip
            await writer.apply(event)
        intents = {q: intent for intent, (_, qs) in INTENTS.items() for q in qs}
        pools = backend_pools(settings)
        async with open_shared_store(redis_url) as shared:
            answerer = Answerer(
                retriever=Retriever(store=store, embedder=embedder, collection="chunks"),
                router=ModelRouter(pools, AutoRouter(0.2, 50)),
                gateway=IntentNamingGateway(intents),  # type: ignore[arg-type]
                firewall=PiiFirewall(),
                settings=settings,
                cache=AnswerCache(shared, ttl_s=600, similarity=similarity),
            )
            rng = random.Random(17)
            counts = {"hit": 0, "semantic_hit": 0, "miss": 0, "wrong": 0, "saved_tokens": 0}
            times: dict[str, list[float]] = {"hit": [], "miss": []}
            for _ in range(rounds):
                order = list(intents)
                rng.shuffle(order)
                for question in order:
                    principal = Principal(tenant=tenant, user_id=rng.choice(USERS))
                    request = ChatCompletionRequest.model_validate(
                        {"model": "small", "messages": [{"role": "user", "content": question}]}
                    )
                    started = time.perf_counter()
                    prepared = await answerer.prepare(principal, request)
                    answer = await answerer.complete(prepared)
                    elapsed = time.perf_counter() - started
                    cache = answer["headwater"]["cache"]
                    outcome = cache["outcome"]
                    counts[outcome] += 1
                    times["miss" if outcome == "miss" else "hit"].append(elapsed)
                    if outcome != "miss":
                        counts["saved_tokens"] += cache["saved_tokens"]
                        served = answer["choices"][0]["message"]["content"]
                        counts["wrong"] += served != f"answer to {intents[question]}"
        await pools.aclose()
        store.close()
    asked = sum(counts[k] for k in ("hit", "semantic_hit", "miss"))
    hits = counts["hit"] + counts["semantic_hit"]
    return {
        "similarity": similarity,
        "questions": asked,
        "exact_hit_rate": round(counts["hit"] / asked, 3),
        "semantic_hit_rate": round(counts["semantic_hit"] / asked, 3),
        "wrong_hit_rate": round(counts["wrong"] / hits, 3) if hits else 0.0,
        "wrong_hits": counts["wrong"],
        "saved_tokens_per_hit": round(counts["saved_tokens"] / hits) if hits else 0,
        "hit_p50_ms": round(statistics.median(times["hit"]) * 1000, 1) if times["hit"] else None,
        "miss_p50_ms": round(statistics.median(times["miss"]) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thresholds", default="0.8,0.85,0.9,0.95")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    embedder = SentenceTransformerEmbedder(None, model_name="all-MiniLM-L6-v2")
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        server = redis_process(
            port=port, data_dir=Path(root) / "data", log_path=Path(root) / "redis.log"
        )
        server.start()
        try:
            server.wait_ready(30)
            url = f"redis://127.0.0.1:{port}/0"
            results = []
            for threshold in (float(t) for t in args.thresholds.split(",")):
                print(f"replay at similarity {threshold}", file=sys.stderr)
                results.append(asyncio.run(replay(url, embedder, threshold, args.rounds)))
        finally:
            server.stop()
    print(json.dumps({"intents": len(INTENTS), "rounds": args.rounds, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

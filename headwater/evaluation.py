"""Retrieval quality through the real pipeline: a BEIR set in, nDCG@10, recall@100,
MRR@10 and search latency per search configuration out.

One run:

1. opens the process's shared clients (embedder, store, producer) and the ingest worker
   on this event loop, as ``headwater serve`` does, with topics and a consumer group of
   its own (:func:`isolated_settings`);
2. publishes the corpus as document events into its own tenant, every document
   readable by the group ``eval`` alone, and waits until the store applied them all;
3. asks every judged query through :class:`retrieval.service.Retriever` as a principal
   in that group, once per configuration, configurations interleaved per query so that
   background load falls on all alike (after one unmeasured warm-up search each);
4. asks a few queries as a principal of the same tenant outside the group, in every
   configuration: each hit it gets is an ACL leak (``acl_leaks`` must be 0).

Documents, not chunks, are scored (BEIR judges documents; chunking splits them): a
search asks for 100 chunks and each document takes the rank of its best chunk; when
those 100 chunks hold fewer than 100 documents and the store had more, the search is
asked again three times deeper (up to 2,000 chunks). Only the first call is timed: the
latency is one ``Retriever.search`` call (question embedding plus store query) for 100
chunks. Hybrid prefetches and MMR's pool are therefore at least 100 deep here, deeper
than an API call for the default 4 sources would make them.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from acl.filter import PermissionFilter
from acl.models import Principal
from core.settings import Settings
from headwater.beir import BeirDataset
from headwater.clients import SharedClients, open_shared_clients
from headwater.eval_corpus import (
    EvaluationError,
    ProgressCallback,
    clock_version,
    corpus_events,
    publish_all,
    wait_indexed,
)
from headwater.eval_report import (
    Configuration,
    ConfigurationScore,
    EvaluationReport,
    machine_description,
)
from headwater.metrics_ir import documents_by_best_chunk, mrr_at_k, ndcg_at_k, percentile
from headwater.metrics_ir import recall_at_k as recall
from ingest.publish import DocumentPublisher
from ingest.runtime import ingest_worker
from retrieval.embedding import Embedder
from retrieval.query import SearchPolicy
from retrieval.service import Retriever
from retrieval.store import VectorStore

READER_GROUP = "eval"
DOCUMENT_DEPTH = 100
CHUNK_DEPTH_MAX = 2000
ACL_PROBE_QUERIES = 5
# Eval topics on a shared broker drop their events after a day rather than a week.
EVAL_RETENTION_MS = 24 * 3600 * 1000


def isolated_settings(
    base: Settings, *, data_dir: Path, run_id: str, kafka_bootstrap: str | None = None
) -> Settings:
    """``base`` with a data folder, documents topics and a consumer group of the run's own,
    so that a running ``headwater serve`` on the same broker neither shares the run's
    partitions nor indexes its documents."""
    prefix = f"headwater.eval.{run_id}"
    update: dict[str, object] = {
        "data_dir": data_dir,
        "documents_topic": f"{prefix}.documents",
        "dlq_topic": f"{prefix}.documents.dlq",
        "consumer_group": f"headwater-eval-{run_id}",
        "documents_retention_ms": EVAL_RETENTION_MS,
    }
    if kafka_bootstrap:
        update["kafka_bootstrap"] = kafka_bootstrap
    return base.model_copy(update=update)


def default_configuration(settings: Settings) -> Configuration:
    """The configuration the search service uses when a call names none."""
    return Configuration.of_policy(SearchPolicy.from_settings(settings))


async def evaluate(
    dataset: BeirDataset,
    *,
    settings: Settings,
    configurations: Sequence[Configuration],
    tenant: str,
    embedder: Embedder | None = None,
    progress: ProgressCallback | None = None,
    stall_timeout_s: float = 180.0,
) -> EvaluationReport:
    """Index ``dataset`` through the pipeline and score each configuration on it."""
    report_progress = progress or _silent
    async with (
        open_shared_clients(settings, embedder=embedder) as clients,
        ingest_worker(
            settings, store=clients.store, embedder=clients.embedder, producer=clients.producer
        ),
    ):
        _check_supported(clients.store, configurations)
        began = time.perf_counter()
        documents = await _ingest(
            clients,
            dataset,
            settings=settings,
            tenant=tenant,
            progress=report_progress,
            stall_timeout_s=stall_timeout_s,
        )
        ingest_s = time.perf_counter() - began
        base = SearchPolicy.from_settings(settings)
        retrievers = {
            config.name: (config, _retriever(clients, settings, config.policy(base)))
            for config in configurations
        }
        began = time.perf_counter()
        scores = await _score_all(dataset, tenant, retrievers, report_progress)
        leaks, probes = await _acl_probe(dataset, tenant, retrievers)
        query_s = time.perf_counter() - began
        chunks = await asyncio.to_thread(clients.store.count, tenant=tenant)
    return EvaluationReport(
        dataset=dataset.name,
        split=dataset.split,
        tenant=tenant,
        documents=documents,
        chunks=chunks,
        queries=len(dataset.queries),
        default=default_configuration(settings).name,
        scores=scores,
        acl_leaks=leaks,
        acl_probes=probes,
        ingest_s=round(ingest_s, 1),
        query_s=round(query_s, 1),
        settings=_settings_used(settings),
        machine=machine_description(),
    )


def _check_supported(store: VectorStore, configurations: Sequence[Configuration]) -> None:
    lexical = [config.name for config in configurations if config.mode != "dense"]
    if not lexical:
        return
    if "mode" not in inspect.signature(Retriever.search).parameters:
        raise EvaluationError(
            "this build's Retriever.search takes no search mode (hybrid search is not "
            "installed): evaluate with --modes dense"
        )
    if not store.lexical:
        raise EvaluationError(
            f"the collection has no lexical vector, so {', '.join(lexical)} would run dense: "
            "re-index it, or evaluate on the embedded store (unset HEADWATER_QDRANT_URL)"
        )


async def _ingest(
    clients: SharedClients,
    dataset: BeirDataset,
    *,
    settings: Settings,
    tenant: str,
    progress: ProgressCallback,
    stall_timeout_s: float,
) -> int:
    version = clock_version()
    events = corpus_events(
        dataset.corpus.values(), tenant=tenant, group=READER_GROUP, version=version
    )
    if not events:
        raise EvaluationError(f"{dataset.name}: the corpus has no document with text")
    publisher = DocumentPublisher(clients.producer, settings.documents_topic)
    await publish_all(publisher, events, progress=progress)
    keys = [(tenant, event.doc_id) for event in events]
    await wait_indexed(
        clients.store, keys, version=version, stall_timeout_s=stall_timeout_s, progress=progress
    )
    return len(events)


def _retriever(clients: SharedClients, settings: Settings, policy: SearchPolicy) -> Retriever:
    return Retriever(
        store=clients.store,
        embedder=clients.embedder,
        collection=settings.collection,
        policy=policy,
    )


async def _ranking(
    retriever: Retriever, config: Configuration, question: str, permission: PermissionFilter
) -> tuple[list[str], float]:
    """Documents by best chunk (up to ``DOCUMENT_DEPTH``), and the first call's seconds."""
    depth = DOCUMENT_DEPTH
    began = time.perf_counter()
    hits = await retriever.search(question, permission=permission, top_k=depth, mode=config.mode)
    elapsed = time.perf_counter() - began
    ranking = documents_by_best_chunk(hit.doc_id for hit in hits)
    while len(ranking) < DOCUMENT_DEPTH and len(hits) == depth and depth < CHUNK_DEPTH_MAX:
        depth = min(depth * 3, CHUNK_DEPTH_MAX)
        hits = await retriever.search(
            question, permission=permission, top_k=depth, mode=config.mode
        )
        ranking = documents_by_best_chunk(hit.doc_id for hit in hits)
    return ranking[:DOCUMENT_DEPTH], elapsed


async def _score_all(
    dataset: BeirDataset,
    tenant: str,
    retrievers: dict[str, tuple[Configuration, Retriever]],
    progress: ProgressCallback,
) -> list[ConfigurationScore]:
    reader = _permission(tenant, "eval-reader", READER_GROUP)
    first = next(iter(dataset.queries.values()))
    for config, retriever in retrievers.values():  # warm-up, not measured
        await _ranking(retriever, config, first, reader)
    metrics: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in retrievers}
    progress("query", 0, len(dataset.queries))
    for done, (query_id, question) in enumerate(dataset.queries.items(), start=1):
        judged = dataset.qrels[query_id]
        for name, (config, retriever) in retrievers.items():
            ranking, seconds = await _ranking(retriever, config, question, reader)
            scored = (
                ndcg_at_k(ranking, judged),
                recall(ranking, judged),
                mrr_at_k(ranking, judged),
            )
            metrics[name].append((*scored, seconds))
        progress("query", done, len(dataset.queries))
    return [_summary(name, rows) for name, rows in metrics.items()]


def _summary(name: str, rows: list[tuple[float, float, float, float]]) -> ConfigurationScore:
    ndcg, recalls, mrr, seconds = (list(column) for column in zip(*rows, strict=True))
    return ConfigurationScore(
        configuration=name,
        ndcg_at_10=round(statistics.fmean(ndcg), 4),
        recall_at_100=round(statistics.fmean(recalls), 4),
        mrr_at_10=round(statistics.fmean(mrr), 4),
        latency_p50_ms=round(percentile(seconds, 0.5) * 1000, 2),
        latency_p95_ms=round(percentile(seconds, 0.95) * 1000, 2),
    )


async def _acl_probe(
    dataset: BeirDataset, tenant: str, retrievers: dict[str, tuple[Configuration, Retriever]]
) -> tuple[int, int]:
    """Hits seen by a principal of the tenant outside the group (must be 0), and searches."""
    outsider = _permission(tenant, "eval-outsider", "eval-outsiders")
    leaks = probes = 0
    for question in list(dataset.queries.values())[:ACL_PROBE_QUERIES]:
        for config, retriever in retrievers.values():
            hits = await retriever.search(
                question, permission=outsider, top_k=DOCUMENT_DEPTH, mode=config.mode
            )
            leaks, probes = leaks + len(hits), probes + 1
    return leaks, probes


def _permission(tenant: str, user_id: str, group: str) -> PermissionFilter:
    return PermissionFilter.for_principal(
        Principal(tenant=tenant, user_id=user_id, groups=(group,))
    )


def _settings_used(settings: Settings) -> dict[str, object]:
    return {
        "embedding_model": settings.embedding_model,
        "embedding_backend": "remote" if settings.embedding_url else settings.embedding_backend,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "retrieval_candidates": settings.retrieval_candidates,
        "retrieval_mmr_diversity": settings.retrieval_mmr_diversity,
        "store": "qdrant-server" if settings.qdrant_url else "embedded",
    }


def _silent(_stage: str, _done: int, _total: int) -> None:
    """No progress reporting (library callers, tests)."""

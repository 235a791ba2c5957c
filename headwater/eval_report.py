"""What a retrieval evaluation measures: the configurations it compares and its report.

A configuration is a search mode with its fusion and reranking, written
``MODE[/FUSION][+RERANK]``: ``dense``, ``sparse``, ``hybrid`` (fusion from the settings),
``hybrid/dbsf``, ``hybrid+mmr``. Its canonical name shows the fusion for hybrid only.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

from retrieval.query import FusionMethod, RerankMethod, SearchMode, SearchPolicy

MODES: tuple[str, ...] = get_args(SearchMode)
FUSIONS: tuple[str, ...] = get_args(FusionMethod)
RERANKS: tuple[str, ...] = get_args(RerankMethod)


@dataclass(frozen=True)
class Configuration:
    """One way of searching that the evaluation scores."""

    mode: SearchMode
    fusion: FusionMethod
    rerank: RerankMethod = "none"

    @property
    def name(self) -> str:
        fusion = f"/{self.fusion}" if self.mode == "hybrid" else ""
        rerank = f"+{self.rerank}" if self.rerank != "none" else ""
        return f"{self.mode}{fusion}{rerank}"

    @classmethod
    def of_policy(cls, policy: SearchPolicy) -> Configuration:
        """The configuration a retriever with ``policy`` searches with by default."""
        return cls(policy.mode, policy.fusion, policy.rerank)

    @classmethod
    def parse(cls, text: str, *, default_fusion: FusionMethod) -> Configuration:
        """``MODE[/FUSION][+RERANK]``; raises ``ValueError`` naming what is allowed."""
        head, _, rerank = text.strip().partition("+")
        mode, _, fusion = head.partition("/")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} in {text!r}: one of {', '.join(MODES)}")
        if fusion and (mode != "hybrid" or fusion not in FUSIONS):
            raise ValueError(f"{text!r}: only hybrid takes a fusion, one of {', '.join(FUSIONS)}")
        if rerank and rerank not in RERANKS:
            raise ValueError(f"unknown reranking {rerank!r}: one of {', '.join(RERANKS)}")
        return cls(mode, fusion or default_fusion, rerank or "none")  # type: ignore[arg-type]

    def policy(self, base: SearchPolicy) -> SearchPolicy:
        """``base`` with this configuration's mode, fusion and reranking."""
        return replace(base, mode=self.mode, fusion=self.fusion, rerank=self.rerank)


@dataclass(frozen=True)
class ConfigurationScore:
    """Mean metrics over the evaluated queries, and the search call's latency."""

    configuration: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float


@dataclass(frozen=True)
class EvaluationReport:
    """One run: what was indexed, each configuration's score, and the ACL check."""

    dataset: str
    split: str
    tenant: str
    documents: int
    chunks: int
    queries: int
    default: str
    scores: list[ConfigurationScore]
    acl_leaks: int
    acl_probes: int
    ingest_s: float
    query_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def score(self, configuration: str) -> ConfigurationScore:
        """The score of the configuration named ``configuration``."""
        for score in self.scores:
            if score.configuration == configuration:
                return score
        raise KeyError(configuration)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_description() -> dict[str, Any]:
    """The CPUs this process may use and their model: figures depend on both."""
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

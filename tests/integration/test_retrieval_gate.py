"""The retrieval gate: the default search configuration, measured through the real
pipeline (Kafka, the ingest worker, MiniLM, the embedded store) on the committed golden
set, must not fall more than the baseline's tolerance below its recorded nDCG@10.

The golden set and its provenance: tests/data/golden/. A deliberate change of quality
rewrites baseline.json in the same commit (the failure message says how).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.settings import Settings
from headwater.beir import load_beir
from headwater.eval_baseline import Baseline
from headwater.evaluation import default_configuration, evaluate, isolated_settings
from retrieval.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


async def test_the_default_configuration_holds_the_golden_baseline(
    kafka_bootstrap: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    baseline = Baseline.load(GOLDEN / "baseline.json")
    dataset = load_beir(GOLDEN, split=baseline.split)
    settings = isolated_settings(
        Settings(qdrant_url=None),
        data_dir=tmp_path,
        run_id=uuid.uuid4().hex[:8],
        kafka_bootstrap=kafka_bootstrap,
    )
    report = await evaluate(
        dataset,
        settings=settings,
        configurations=[default_configuration(settings)],
        tenant="eval-golden",
        embedder=embedder,
    )
    assert report.acl_leaks == 0, f"an outsider saw {report.acl_leaks} hit(s)"
    assert (report.documents, report.queries) == (baseline.documents, baseline.queries), (
        f"the golden set changed without its baseline: rewrite it with {baseline.update_command}"
    )
    failure = baseline.shortfall(report)
    assert failure is None, failure

"""The evaluation's parts that need no broker: configurations, corpus events, waiting for
the index (over a fake store), the baseline check, and the command's argument errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater.beir import BeirDocument
from headwater.eval_baseline import UPDATE_COMMAND, Baseline
from headwater.eval_cli import eval_app
from headwater.eval_corpus import EvaluationError, corpus_events, wait_indexed
from headwater.eval_report import Configuration, ConfigurationScore, EvaluationReport
from retrieval.query import SearchPolicy
from retrieval.schema import DocumentKey, DocumentState


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("dense", "dense"),
        ("sparse", "sparse"),
        ("hybrid", "hybrid/rrf"),
        ("hybrid/dbsf", "hybrid/dbsf"),
        ("hybrid+mmr", "hybrid/rrf+mmr"),
        (" dense+mmr ", "dense+mmr"),
    ],
)
def test_configurations_parse_to_canonical_names(text: str, name: str) -> None:
    assert Configuration.parse(text, default_fusion="rrf").name == name


@pytest.mark.parametrize("text", ["bm25", "dense/rrf", "hybrid/sum", "hybrid+cross-encoder"])
def test_unknown_configurations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Configuration.parse(text, default_fusion="rrf")


def test_a_configuration_sets_the_policy_it_searches_with() -> None:
    base = SearchPolicy(mode="dense", candidates=70)
    policy = Configuration.parse("hybrid/dbsf+mmr", default_fusion="rrf").policy(base)
    assert (policy.mode, policy.fusion, policy.rerank, policy.candidates) == (
        "hybrid",
        "dbsf",
        "mmr",
        70,
    )
    assert Configuration.of_policy(policy).name == "hybrid/dbsf+mmr"


def test_corpus_events_are_readable_by_one_group_and_skip_empty_documents() -> None:
    documents = [
        BeirDocument("d1", "A title", "Some text"),
        BeirDocument("d2", "Only a title", "  "),
        BeirDocument("d3", "", ""),
    ]
    events = corpus_events(documents, tenant="eval-x", group="eval", version=5)
    assert [e.doc_id for e in events] == ["d1", "d2"]
    assert events[1].text == "Only a title"
    assert all(e.acl.groups == ("eval",) and not e.acl.users and not e.acl.public for e in events)
    assert {(e.tenant, e.version, e.op) for e in events} == {("eval-x", 5, "upsert")}


class _FakeStates:
    """Document states that appear a few at a time (a worker applying them)."""

    def __init__(self, keys: Sequence[DocumentKey], *, per_poll: int, version: int):
        self._pending = list(keys)
        self._applied: dict[DocumentKey, DocumentState] = {}
        self._per_poll = per_poll
        self._version = version

    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        for key in self._pending[: self._per_poll]:
            self._applied[key] = DocumentState(version=self._version)
        del self._pending[: self._per_poll]
        return {key: self._applied[key] for key in keys if key in self._applied}


def test_waiting_ends_once_every_document_has_the_run_version() -> None:
    keys = [("t", f"d{i}") for i in range(5)]
    store = _FakeStates(keys, per_poll=2, version=7)
    seen: list[tuple[str, int, int]] = []
    asyncio.run(
        wait_indexed(
            store,  # type: ignore[arg-type]
            keys,
            version=7,
            stall_timeout_s=5,
            progress=lambda *args: seen.append(args),
            poll_s=0,
        )
    )
    assert seen[-1] == ("index", 5, 5)


def test_an_older_version_does_not_count_and_a_stall_says_where_to_look() -> None:
    keys = [("t", "d1")]
    store = _FakeStates(keys, per_poll=1, version=6)
    with pytest.raises(EvaluationError, match="1 of 1 documents not indexed.*DLQ"):
        asyncio.run(
            wait_indexed(
                store,  # type: ignore[arg-type]
                keys,
                version=7,
                stall_timeout_s=0.05,
                progress=lambda *_: None,
                poll_s=0.01,
            )
        )


def _report(ndcg: float) -> EvaluationReport:
    score = ConfigurationScore("hybrid/rrf", ndcg, 0.9, 0.7, 12.0, 20.0)
    dense = ConfigurationScore("dense", 0.6, 0.85, 0.6, 11.0, 19.0)
    return EvaluationReport(
        dataset="golden",
        split="train",
        tenant="eval-golden",
        documents=491,
        chunks=1200,
        queries=80,
        default="hybrid/rrf",
        scores=[dense, score],
        acl_leaks=0,
        acl_probes=10,
        ingest_s=30.0,
        query_s=5.0,
    )


def test_the_baseline_passes_within_its_tolerance_and_explains_a_failure(tmp_path: Path) -> None:
    baseline = Baseline.from_report(_report(0.75), tolerance=0.02)
    baseline.write(tmp_path / "baseline.json")
    loaded = Baseline.load(tmp_path / "baseline.json")
    assert loaded == baseline and loaded.floor == 0.73
    assert loaded.configurations["dense"].ndcg_at_10 == 0.6
    assert loaded.shortfall(_report(0.7301)) is None
    message = loaded.shortfall(_report(0.7299))
    assert message is not None
    assert "0.7299" in message and "0.7300" in message and UPDATE_COMMAND in message


def test_the_command_refuses_a_missing_set_and_an_unknown_mode(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    missing = runner.invoke(eval_app, ["retrieval", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    source = Path(__file__).resolve().parents[2] / "data" / "golden"
    bad = runner.invoke(eval_app, ["retrieval", str(source), "--split", "train", "--modes", "x"])
    assert bad.exit_code == 2 and "unknown mode" in bad.output

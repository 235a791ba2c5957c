"""Reading BEIR folders, cutting seeded subsets, and writing them back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from headwater.beir import BeirFormatError, load_beir, seeded_subset, write_beir


def _write_set(root: Path, *, gz: bool = False, qrels: str | None = None) -> Path:
    corpus = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"Text {i}"} for i in range(1, 9)]
    lines = "".join(json.dumps(row) + "\n" for row in corpus)
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as out:
            out.write(lines)
    else:
        (root / "corpus.jsonl").write_text(lines)
    queries = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(1, 6)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir()
    default = (
        "query-id\tcorpus-id\tscore\n"
        "q1\td1\t1\nq1\td2\t2\n"  # q1: two relevant documents, graded
        "q2\td3\t1\n"
        "q3\tmissing\t1\n"  # q3 judges a document the corpus lacks: not evaluated
        "q4\td4\t0\n"  # q4 has no relevant document: not evaluated
        "q9\td5\t1\n"  # q9 is not among the queries: not evaluated
    )
    (root / "qrels" / "test.tsv").write_text(qrels or default)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_loads_a_plain_or_gzipped_corpus_and_keeps_judged_queries_only(
    tmp_path: Path, gz: bool
) -> None:
    dataset = load_beir(_write_set(tmp_path, gz=gz))
    assert dataset.name == tmp_path.name and dataset.split == "test"
    assert list(dataset.corpus) == [f"d{i}" for i in range(1, 9)]
    assert dataset.corpus["d2"].title == "Title 2" and dataset.corpus["d2"].text == "Text 2"
    assert dataset.queries == {"q1": "question 1", "q2": "question 2"}
    assert dataset.qrels == {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}}


def test_limited_keeps_the_first_queries_and_the_whole_corpus(tmp_path: Path) -> None:
    dataset = load_beir(_write_set(tmp_path)).limited(1)
    assert list(dataset.queries) == ["q1"] and list(dataset.qrels) == ["q1"]
    assert len(dataset.corpus) == 8


def test_errors_name_the_file_at_fault(tmp_path: Path) -> None:
    root = _write_set(tmp_path)
    with pytest.raises(BeirFormatError, match=r"qrels/train\.tsv: no such file"):
        load_beir(root, split="train")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "fine"}\nnot json\n')
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl:2: not JSON"):
        load_beir(root)
    with pytest.raises(BeirFormatError, match="no such folder"):
        load_beir(tmp_path / "absent")


def test_a_qrels_file_needs_its_header(tmp_path: Path) -> None:
    root = _write_set(tmp_path, qrels="q1\td1\t1\n")
    with pytest.raises(BeirFormatError, match="header"):
        load_beir(root)


def test_a_split_without_any_usable_judgement_is_refused(tmp_path: Path) -> None:
    root = _write_set(tmp_path, qrels="query-id\tcorpus-id\tscore\nq4\td4\t0\n")
    with pytest.raises(BeirFormatError, match="no query of split 'test'"):
        load_beir(root)


def test_seeded_subset_is_deterministic_and_holds_every_judged_document(tmp_path: Path) -> None:
    dataset = load_beir(_write_set(tmp_path))
    first = seeded_subset(dataset, queries=1, distractors=2, seed=7)
    again = seeded_subset(dataset, queries=1, distractors=2, seed=7)
    assert first == again
    (query_id,) = first.queries
    relevant = set(dataset.qrels[query_id])
    assert relevant <= set(first.corpus)
    assert len(first.corpus) == len(relevant) + 2
    assert list(first.corpus) == [doc for doc in dataset.corpus if doc in first.corpus]


def test_write_then_load_gives_the_same_set(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    dataset = load_beir(_write_set(source))
    write_beir(dataset, tmp_path / "copy")
    copy = load_beir(tmp_path / "copy")
    assert (copy.corpus, copy.queries, copy.qrels) == (
        dataset.corpus,
        dataset.queries,
        dataset.qrels,
    )

"""BEIR-format retrieval sets: read one, and cut a small seeded subset out of one.

A set is a folder with ``corpus.jsonl`` (or ``corpus.jsonl.gz``; one
``{"_id", "title", "text"}`` a line), ``queries.jsonl`` (``{"_id", "text"}``) and
``qrels/<split>.tsv`` (a ``query-id  corpus-id  score`` header, then one judgement a
line). Only queries with at least one relevant document that the corpus holds are
evaluated (BEIR does the same).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class BeirFormatError(ValueError):
    """A folder that is not a readable BEIR set; the message says which file and why."""


@dataclass(frozen=True)
class BeirDocument:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    """A corpus, the queries that have judgements, and those judgements (graded)."""

    name: str
    split: str
    corpus: dict[str, BeirDocument]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def limited(self, max_queries: int | None) -> BeirDataset:
        """The same set with only its first ``max_queries`` queries (all when None)."""
        if max_queries is None or max_queries >= len(self.queries):
            return self
        kept = dict(list(self.queries.items())[:max_queries])
        qrels = {query_id: self.qrels[query_id] for query_id in kept}
        return BeirDataset(self.name, self.split, self.corpus, kept, qrels)


def load_beir(folder: Path, *, split: str = "test") -> BeirDataset:
    """Read a BEIR set; raises :class:`BeirFormatError` naming the file at fault."""
    if not folder.is_dir():
        raise BeirFormatError(f"{folder}: no such folder")
    corpus = {doc.doc_id: doc for doc in _corpus(folder)}
    qrels = _qrels(folder / "qrels" / f"{split}.tsv")
    texts = {str(row["_id"]): str(row["text"]) for row in _json_lines(folder / "queries.jsonl")}
    judged = {
        query_id: judgements
        for query_id, judgements in qrels.items()
        if query_id in texts and any(rel > 0 and doc in corpus for doc, rel in judgements.items())
    }
    queries = {query_id: text for query_id, text in texts.items() if query_id in judged}
    if not queries:
        raise BeirFormatError(f"{folder}: no query of split {split!r} has a relevant document")
    qrels_kept = {query_id: judged[query_id] for query_id in queries}
    return BeirDataset(folder.resolve().name, split, corpus, queries, qrels_kept)


def seeded_subset(
    dataset: BeirDataset, *, queries: int, distractors: int, seed: int
) -> BeirDataset:
    """``queries`` queries drawn at random (``seed``), the documents they judge relevant,
    and ``distractors`` other documents drawn at random; file order is kept throughout."""
    rng = random.Random(seed)
    chosen = set(rng.sample(list(dataset.queries), min(queries, len(dataset.queries))))
    kept_queries = {q: text for q, text in dataset.queries.items() if q in chosen}
    qrels = {
        q: {doc: rel for doc, rel in dataset.qrels[q].items() if doc in dataset.corpus}
        for q in kept_queries
    }
    relevant = {doc for judgements in qrels.values() for doc in judgements}
    others = [doc for doc in dataset.corpus if doc not in relevant]
    kept_docs = relevant | set(rng.sample(others, min(distractors, len(others))))
    corpus = {doc: value for doc, value in dataset.corpus.items() if doc in kept_docs}
    return BeirDataset(dataset.name, dataset.split, corpus, kept_queries, qrels)


def write_beir(dataset: BeirDataset, folder: Path) -> None:
    """Write ``dataset`` as a BEIR folder (plain ``corpus.jsonl``, reviewable in diffs)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in dataset.corpus.values():
            row = {"_id": doc.doc_id, "title": doc.title, "text": doc.text}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in dataset.queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    with (folder / "qrels" / f"{dataset.split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, judgements in dataset.qrels.items():
            out.writelines(f"{query_id}\t{doc}\t{rel}\n" for doc, rel in judgements.items())


def _corpus(folder: Path) -> Iterator[BeirDocument]:
    path = next(
        (p for p in (folder / "corpus.jsonl", folder / "corpus.jsonl.gz") if p.is_file()),
        folder / "corpus.jsonl",
    )
    for row in _json_lines(path):
        yield BeirDocument(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))


def _json_lines(path: Path) -> Iterator[dict[str, object]]:
    if not path.is_file():
        raise BeirFormatError(f"{path}: no such file")
    with _open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BeirFormatError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "_id" not in row:
                raise BeirFormatError(f"{path}:{number}: a JSON object with '_id' is needed")
            yield row


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    return path.open(encoding="utf-8")


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise BeirFormatError(f"{path}: no such file (choose the split with --split)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as lines:
        header = next(lines, "").split()
        if header[:2] != ["query-id", "corpus-id"]:
            raise BeirFormatError(f"{path}:1: header 'query-id corpus-id score' expected")
        for number, line in enumerate(lines, start=2):
            fields = line.split()
            if not fields:
                continue
            try:
                query_id, doc_id, score = fields
                qrels.setdefault(query_id, {})[doc_id] = int(score)
            except ValueError:
                raise BeirFormatError(f"{path}:{number}: 'query-id corpus-id score'") from None
    return qrels

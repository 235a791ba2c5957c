"""``headwater eval``: measure retrieval quality through the real pipeline.

``headwater eval retrieval DATASET_DIR`` indexes a BEIR-format set through Kafka and the
ingest worker and scores each search configuration on it (see ``headwater.evaluation``);
``headwater eval subset`` cuts a small seeded set out of a large one (the golden set).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.errors import HeadwaterError
from core.settings import Settings
from core.telemetry import configure_logging
from deploy.process import StackError
from deploy.stack import private_broker
from headwater.beir import BeirFormatError, load_beir, seeded_subset, write_beir
from headwater.eval_baseline import Baseline
from headwater.eval_report import Configuration, EvaluationReport
from headwater.evaluation import default_configuration, evaluate, isolated_settings

eval_app = typer.Typer(
    help="Measure retrieval quality on BEIR-format sets, through the real pipeline.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
_STAGES = {"publish": "publishing", "index": "indexing", "query": "querying"}
DEFAULT_CONFIGURATIONS = "dense,sparse,hybrid,hybrid+mmr"


@eval_app.command()
def retrieval(
    dataset_dir: Annotated[
        Path, typer.Argument(help="A BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/.")
    ],
    split: Annotated[str, typer.Option(help="Judgements from qrels/SPLIT.tsv.")] = "test",
    modes: Annotated[
        str,
        typer.Option(
            help="Comma-separated configurations, each MODE, MODE/FUSION or MODE+RERANK "
            "(e.g. hybrid/dbsf+mmr): modes dense, sparse, hybrid; fusion rrf or dbsf (hybrid "
            "only; default: the setting); rerank mmr. The default configuration "
            "(HEADWATER_RETRIEVAL_*) is always added."
        ),
    ] = DEFAULT_CONFIGURATIONS,
    limit_queries: Annotated[
        int | None, typer.Option(min=1, help="Only the first N judged queries (all of the corpus).")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON report, indented, here.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant to index into; default: eval-<folder name>.")
    ] = None,
    start_kafka: Annotated[
        bool,
        typer.Option(
            "--start-kafka",
            help="Start a private Kafka broker (deploy/kafka) instead of using "
            "HEADWATER_KAFKA_BOOTSTRAP.",
        ),
    ] = False,
    write_baseline: Annotated[
        Path | None,
        typer.Option(help="Record the default configuration's figures as the gate's baseline."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0, max=1, help="With --write-baseline: nDCG@10 forgiven.")
    ] = 0.02,
) -> None:
    """Index DATASET_DIR through Kafka and the ingest worker; score each configuration.

    Scores are on documents (a document ranks at its best chunk): nDCG@10,
    recall@100, MRR@10, and the p50/p95 latency of one search call.
    The table and progress go to stderr; one JSON line goes to stdout.

    Store: an embedded one in a temporary folder, or the Qdrant server of
    HEADWATER_QDRANT_URL (the eval tenant's documents then stay there).
    Broker: HEADWATER_KAFKA_BOOTSTRAP (make up), or --start-kafka.

    Exit 1 if the run fails, or if a principal outside the readers' group
    saw any hit (acl_leaks).

    Example: headwater eval retrieval ../shared/eval/scifact-train --split train
    """
    settings = Settings()
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}))
    try:
        dataset = load_beir(dataset_dir, split=split).limited(limit_queries)
        configurations = _configurations(modes, settings)
    except BeirFormatError as exc:
        raise typer.BadParameter(str(exc), param_hint="DATASET_DIR") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--modes") from None
    console.print(
        f"{dataset.name}: {len(dataset.corpus):,} documents, {len(dataset.queries):,} queries "
        f"({split}); configurations {', '.join(c.name for c in configurations)}"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="headwater-eval-") as scratch:
            root = Path(scratch)
            with _broker(root, start=start_kafka) as bootstrap, _Bars() as progress:
                run = isolated_settings(
                    settings,
                    data_dir=root / "data",
                    run_id=uuid.uuid4().hex[:8],
                    kafka_bootstrap=bootstrap,
                )
                report = asyncio.run(
                    evaluate(
                        dataset,
                        settings=run,
                        configurations=configurations,
                        tenant=tenant or f"eval-{dataset.name}",
                        progress=progress,
                    )
                )
    except (HeadwaterError, StackError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    _publish(report, json_file=json_file, write_baseline=write_baseline, tolerance=tolerance)


@eval_app.command()
def subset(
    source: Annotated[Path, typer.Argument(help="The BEIR folder to draw from.")],
    destination: Annotated[Path, typer.Argument(help="Folder to write the subset into.")],
    split: Annotated[str, typer.Option(help="Judgements from qrels/SPLIT.tsv.")] = "test",
    queries: Annotated[int, typer.Option(min=1, help="Judged queries to draw.")] = 80,
    distractors: Annotated[
        int, typer.Option(min=0, help="Documents no drawn query judges, drawn too.")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the draws (same seed, same subset).")] = 14,
) -> None:
    """Write a small seeded subset of SOURCE: QUERIES queries, every document they judge,
    and DISTRACTORS other documents (how tests/data/golden was made)."""
    try:
        dataset = load_beir(source, split=split)
    except BeirFormatError as exc:
        raise typer.BadParameter(str(exc), param_hint="SOURCE") from None
    chosen = seeded_subset(dataset, queries=queries, distractors=distractors, seed=seed)
    write_beir(chosen, destination)
    console.print(
        f"wrote {destination}: {len(chosen.queries)} queries, {len(chosen.corpus)} documents"
    )


def _configurations(modes: str, settings: Settings) -> list[Configuration]:
    default = default_configuration(settings)
    chosen = [
        Configuration.parse(item, default_fusion=default.fusion)
        for item in modes.split(",")
        if item.strip()
    ]
    return list(dict.fromkeys([*chosen, default]))


@contextmanager
def _broker(root: Path, *, start: bool) -> Iterator[str | None]:
    """A private broker's bootstrap address, or None (HEADWATER_KAFKA_BOOTSTRAP's)."""
    if not start:
        yield None
        return
    with private_broker(root) as bootstrap:
        console.print(f"started a private Kafka broker on {bootstrap}")
        yield bootstrap


class _Bars:
    """Progress bars with an ETA, one per stage, on stderr."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(_STAGES.get(stage, stage), total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)


def _publish(
    report: EvaluationReport,
    *,
    json_file: Path | None,
    write_baseline: Path | None,
    tolerance: float,
) -> None:
    console.print(_table(report))
    if json_file is not None:
        json_file.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if write_baseline is not None:
        baseline = Baseline.from_report(report, tolerance=tolerance)
        baseline.write(write_baseline)
        console.print(
            f"baseline {write_baseline}: {baseline.configuration} nDCG@10 "
            f"{baseline.ndcg_at_10:.4f}, gate floor {baseline.floor:.4f}; put the figure in "
            "the commit message"
        )
    print(json.dumps(report.to_dict()))  # noqa: T201 - the machine-readable result, stdout
    if report.acl_leaks:
        console.print(f"[red]ACL leak:[/] an outsider saw {report.acl_leaks} hit(s)")
        raise typer.Exit(1)


def _table(report: EvaluationReport) -> Table:
    table = Table(
        "configuration",
        "nDCG@10",
        "recall@100",
        "MRR@10",
        "p50 ms",
        "p95 ms",
        title=f"{report.dataset} ({report.split}): {report.documents:,} documents, "
        f"{report.chunks:,} chunks, {report.queries:,} queries",
        caption=f"indexed in {report.ingest_s:.0f}s, queried in {report.query_s:.0f}s; "
        f"acl_leaks {report.acl_leaks} in {report.acl_probes} outsider searches; "
        f"{report.machine.get('cpus')} CPUs",
    )
    for score in report.scores:
        default = " (default)" if score.configuration == report.default else ""
        table.add_row(
            score.configuration + default,
            f"{score.ndcg_at_10:.4f}",
            f"{score.recall_at_100:.4f}",
            f"{score.mrr_at_10:.4f}",
            f"{score.latency_p50_ms:.1f}",
            f"{score.latency_p95_ms:.1f}",
        )
    return table


if __name__ == "__main__":
    eval_app()

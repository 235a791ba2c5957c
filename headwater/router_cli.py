"""``headwater router``: train the learned router for ``model: auto`` and evaluate it.

``headwater router train DATA... --out FILE`` embeds the prompts of outcome files
(``inference.router_data``: ``id``, ``prompt``, ``strong_score``, ``weak_score``),
chooses a model on the fixed split's validation part, refits it on train + validation,
prints its figures and writes the artifact. ``headwater router eval FILE...`` prints a
router's figures against a random router's from the same run, with bootstrap intervals
(``inference.router_report``). Embeddings are cached under ``.cache/router/`` by the
sha256 of the prompts, so a second run does not embed again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from core.settings import Settings
from inference.router_data import (
    SPLIT_DEFINITION,
    OutcomeFileError,
    OutcomeSet,
    Vectors,
    embed_cached,
    load_outcomes,
    split_of,
)
from inference.router_model import DEFAULT_ARTIFACT, RouterModel
from inference.router_report import evaluate_scores, report_lines
from inference.router_training import train_router
from retrieval.embedding import Embedder, open_embedder

router_app = typer.Typer(
    help="The learned router for model=auto: train it, evaluate it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
DEFAULT_CACHE = Path(".cache/router")
KeepContaminated = Annotated[
    bool,
    typer.Option(help="Keep rows flagged routellm_contaminated (RouteLLM drops them)."),
]
CacheDir = Annotated[Path, typer.Option(help="Where prompt embeddings are cached.")]


def _load(files: list[Path], *, keep_contaminated: bool) -> OutcomeSet:
    try:
        return load_outcomes(files, keep_contaminated=keep_contaminated)
    except OutcomeFileError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def embed_outcomes(outcomes: OutcomeSet, *, settings: Settings, cache_dir: Path) -> Vectors:
    """The embeddings of every prompt of ``outcomes`` (cached), with a progress bar."""
    opener: Callable[[], Embedder] = lambda: open_embedder(settings)  # noqa: E731
    # The cache key names the engine too: fp32, bf16 and int8 vectors differ slightly.
    variant = f"{settings.embedding_backend}-{settings.embedding_dtype}"
    columns = (*Progress.get_default_columns()[:2], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("embedding prompts", total=len(outcomes))
        return embed_cached(
            outcomes.prompts,
            opener,
            model_name=settings.embedding_model,
            cache_dir=cache_dir / variant,
            progress=lambda n: bar.advance(task, n),
        )


@router_app.command()
def train(
    data: Annotated[list[Path], typer.Argument(help="Outcome files (.jsonl or .jsonl.gz).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the artifact (JSON).")],
    version: Annotated[str | None, typer.Option(help="Version label; default dated.")] = None,
    keep_contaminated: KeepContaminated = False,
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """Fit the router on DATA's train part, choose on validation, write the artifact."""
    outcomes = _load(data, keep_contaminated=keep_contaminated)
    settings = Settings()
    embeddings = embed_outcomes(outcomes, settings=settings, cache_dir=cache_dir)
    console.print(f"fitting on {len(outcomes)} prompts (a grid of models; about a minute)")
    trained = train_router(
        outcomes,
        embeddings.astype(np.float64),
        meta={
            "version": version or datetime.now(UTC).strftime("%Y-%m-%d"),
            "embedding_model": settings.embedding_model,
            "data": [{"file": path.name} for path in data],
            "data_sha256": outcomes.sha256,
            "dropped_contaminated": outcomes.dropped_contaminated,
            "split": SPLIT_DEFINITION,
            "selection": "best validation APGR; then refit on train + valid",
        },
    )
    trained.model.save(out)
    for name, figures in trained.selection.validation_apgr.items():
        console.print(f"  validation APGR {figures:.4f}  {name}", highlight=False)
    typer.echo(
        json.dumps(
            {
                "out": str(out),
                "chosen": trained.selection.chosen.name(),
                "validation": trained.validation,
                "test": trained.test,
            }
        )
    )


@router_app.command("eval")
def eval_command(
    files: Annotated[list[Path], typer.Argument(help="Outcome files (.jsonl or .jsonl.gz).")],
    router: Annotated[
        Path, typer.Option(help="Router artifact; default the shipped one.")
    ] = DEFAULT_ARTIFACT,
    split: Annotated[
        Literal["test", "all"],
        typer.Option(help="test: the fixed split's test prompts; all: every row."),
    ] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    rounds: Annotated[int, typer.Option(min=10, help="Bootstrap resamples.")] = 1000,
    keep_contaminated: KeepContaminated = False,
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """The router's and a random router's quality against strong-call share, APGR,
    CPT(50%), CPT(80%) and the share for 95% of strong quality, with intervals."""
    outcomes = _load(files, keep_contaminated=keep_contaminated)
    try:
        model = RouterModel.load(router)
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"[red]error:[/] {router}: not a router artifact ({escape(str(exc))})")
        raise typer.Exit(2) from exc
    embeddings = embed_outcomes(outcomes, settings=Settings(), cache_dir=cache_dir)
    keep = np.ones(len(outcomes), dtype=bool)
    if split == "test":
        keep = np.array([split_of(p) == "test" for p in outcomes.prompts])
    chosen = outcomes.subset(keep)
    scores = model.logits(embeddings[keep].astype(np.float64), chosen.prompts)
    report = evaluate_scores(scores, chosen.strong, chosen.weak, rounds=rounds)
    if as_json:
        labels = {"router_version": model.version, "files": [str(f) for f in files]}
        typer.echo(json.dumps({**labels, "split": split, **report.to_dict()}))
        return
    out = Console()
    out.print(f"router {model.version} on {', '.join(map(str, files))} ({split})")
    for line in report_lines(report):
        out.print(line, highlight=False, soft_wrap=True)

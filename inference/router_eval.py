"""``headwater router eval FILE``: replays a labelled set through the ``auto`` router.

The file has one JSON object a line::

    {"question": "What is our travel policy?", "needs": "small", "hits": 4,
     "top_score": 0.81, "context_tokens": 900, "turns": 1, "retrieval": true}

``messages`` (OpenAI-style ``[{"role", "content"}]``) may stand instead of
``question``; ``turns`` then defaults to its user messages. ``needs`` says which tier
serves the item adequately: a ``large`` item only the large model, a ``small`` item
either. Items may carry ``quality_small`` and ``quality_large`` (0..1, e.g. judge
scores); quality is then their mean instead of adequacy. ``id`` and ``category`` are
free-form labels for people and are ignored.

For each target large share the file is replayed through an :class:`AutoRouter`: one
warm-up pass in which the calibrator sees every item's score (scores only, no labels:
what a gateway that has run a while has seen), then a measured pass in file order, the
calibrator still adapting. Reported per target: the achieved large share, quality,
quality and cost relative to sending everything large (per request, a small call
costs ``1 / cost_ratio`` of a large one), and the same for two baselines: random
routing at the same share (its expected value) and the same scorer with the retrieval
features neutralised (prompt text only), which shows what retrieval signals add.

``bench/data/router_eval.jsonl`` is synthetic, written by
``bench/data/make_router_eval.py`` (deterministic, seed 0): templated enterprise
questions whose labels follow a stated rule of thumb (hard task kinds, questions
whose documents do not hold the answer, long summaries and long follow-ups need
large), with 8% of labels flipped and retrieval scores drawn from overlapping
distributions. It shows the mechanism and catches regressions; it is not evidence of
quality on real traffic, which needs judged answers from real requests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.settings import Settings
from inference.scoring import AutoRouter, PromptScorer, RouteSignals, Tier

SWEEP: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, min_length=1)
    messages: list[_Message] | None = Field(None, min_length=1)
    needs: Literal["small", "large"]
    hits: StrictInt = Field(0, ge=0)
    top_score: float | None = Field(None, ge=0, le=1)
    context_tokens: StrictInt = Field(0, ge=0)
    turns: StrictInt | None = Field(None, ge=1)
    retrieval: StrictBool | None = None
    quality_small: float | None = Field(None, ge=0, le=1)
    quality_large: float | None = Field(None, ge=0, le=1)
    id: str | int | None = None
    category: str | None = None


@dataclass(frozen=True)
class EvalItem:
    """One labelled request: what the router sees, and how well each tier serves it."""

    signals: RouteSignals
    needs: Tier
    quality_small: float
    quality_large: float


class EvalFileError(ValueError):
    """A labelled set that cannot be read, with where and what."""


def load_items(path: Path) -> list[EvalItem]:
    """The items of a labelled set; raises :class:`EvalFileError` naming the bad line."""
    if not path.is_file():
        raise EvalFileError(f"{path}: no such file")
    items: list[EvalItem] = []
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                items.append(_item(_Line.model_validate_json(text)))
            except ValidationError as exc:
                raise EvalFileError(f"{path}:{number}: {_describe(exc)}") from exc
            except ValueError as exc:
                raise EvalFileError(f"{path}:{number}: {exc}") from exc
    if not items:
        raise EvalFileError(f"{path}: no items")
    return items


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(problems)


def _item(line: _Line) -> EvalItem:
    if (line.question is None) == (line.messages is None):
        raise ValueError("give exactly one of 'question' and 'messages'")
    if (line.quality_small is None) != (line.quality_large is None):
        raise ValueError("give both 'quality_small' and 'quality_large', or neither")
    if line.hits > 0 and line.top_score is None:
        raise ValueError("'top_score' is needed when 'hits' is above 0")
    if line.messages is not None:
        conversation = [(m.role, m.content) for m in line.messages]
    else:
        conversation = [("user", line.question or "")]
    signals = RouteSignals.from_messages(
        conversation,
        hits=line.hits,
        top_score=line.top_score,
        context_tokens=line.context_tokens,
        retrieval=line.retrieval if line.retrieval is not None else line.hits > 0,
    )
    if not signals.question:
        raise ValueError("'messages' has no user message")
    if line.turns is not None:
        signals = replace(signals, turns=line.turns)
    if line.quality_small is not None and line.quality_large is not None:
        quality = (line.quality_small, line.quality_large)
    else:
        quality = (0.0 if line.needs == "large" else 1.0, 1.0)
    return EvalItem(signals, line.needs, *quality)


@dataclass(frozen=True)
class PolicyResult:
    large_share: float
    quality: float
    relative_quality: float  # quality / quality of all-large
    relative_cost: float  # cost per request / cost of all-large


@dataclass(frozen=True)
class TargetResult:
    target: float
    auto: PolicyResult
    text_only: PolicyResult
    random: PolicyResult


@dataclass(frozen=True)
class EvalReport:
    items: int
    needs_large_share: float
    cost_ratio: float
    window: int
    all_large: PolicyResult
    all_small: PolicyResult
    auc: float  # how well the score ranks needs-large items above needs-small ones
    auc_text_only: float
    targets: list[TargetResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    items: list[EvalItem], *, targets: list[float], cost_ratio: float = 10.0, window: int = 500
) -> EvalReport:
    """Replays ``items`` at each target share with and without the retrieval features."""
    mean_small = sum(i.quality_small for i in items) / len(items)
    mean_large = sum(i.quality_large for i in items) / len(items)

    def result(share: float, quality: float) -> PolicyResult:
        cost = share + (1.0 - share) / cost_ratio
        relative = quality / mean_large if mean_large else 0.0
        return PolicyResult(share, quality, relative, cost)

    def measured(tiers: list[bool]) -> PolicyResult:
        quality = sum(
            i.quality_large if large else i.quality_small
            for i, large in zip(items, tiers, strict=True)
        )
        return result(sum(tiers) / len(items), quality / len(items))

    with_retrieval, text_only = PromptScorer(), PromptScorer(use_retrieval=False)
    rows = []
    for target in targets:
        auto = measured(replay(items, with_retrieval, target=target, window=window))
        share = auto.large_share
        rows.append(
            TargetResult(
                target,
                auto,
                measured(replay(items, text_only, target=target, window=window)),
                result(share, share * mean_large + (1.0 - share) * mean_small),
            )
        )
    labels = [i.needs == "large" for i in items]
    return EvalReport(
        items=len(items),
        needs_large_share=sum(labels) / len(items),
        cost_ratio=cost_ratio,
        window=window,
        all_large=result(1.0, mean_large),
        all_small=result(0.0, mean_small),
        auc=roc_auc([with_retrieval.score(i.signals)[0] for i in items], labels),
        auc_text_only=roc_auc([text_only.score(i.signals)[0] for i in items], labels),
        targets=rows,
    )


def replay(
    items: list[EvalItem], scorer: PromptScorer, *, target: float, window: int
) -> list[bool]:
    """Go-large decisions of the measured pass, after one warm-up pass."""
    router = AutoRouter(target, window, scorer=scorer)
    for item in items:
        router.decide(item.signals)
    return [router.decide(item.signals).tier == "large" for item in items]


def roc_auc(scores: list[float], positive: list[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count a half); 0.5 without both kinds."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    n_pos = sum(positive)
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return 0.5
    rank_sum = sum(rank for rank, pos in zip(ranks, positive, strict=True) if pos)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


router_app = typer.Typer(help="The router for model=auto.", no_args_is_help=True)


@router_app.command("eval")
def eval_command(
    file: Annotated[Path, typer.Argument(help="Labelled set, one JSON object a line.")],
    target_share: Annotated[
        list[float] | None,
        typer.Option(
            "--target-share",
            help="Target large share (repeatable); default 0.1..0.9 and the configured one.",
        ),
    ] = None,
    cost_ratio: Annotated[
        float, typer.Option(min=1.0, help="Cost of a large call over a small one.")
    ] = 10.0,
    window: Annotated[
        int | None, typer.Option(min=1, help="Calibration window; default the configured one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay FILE through the auto router: quality and cost against the large share."""
    errors = Console(stderr=True)
    if any(not 0.0 <= t <= 1.0 for t in target_share or ()):
        errors.print("[red]error:[/] --target-share must be between 0 and 1", soft_wrap=True)
        raise typer.Exit(2)
    try:
        items = load_items(file)
    except EvalFileError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    configured = None
    if not target_share or window is None:
        settings = Settings()
        configured = settings.router_target_large_share
        window = window or settings.router_window
    targets = sorted({round(t, 4) for t in (target_share or [*SWEEP, configured or 0.0])})
    report = evaluate(items, targets=targets, cost_ratio=cost_ratio, window=window)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "configured_target": configured}, indent=2))
        return
    _print_report(Console(), report, configured)


def _print_report(out: Console, report: EvalReport, configured: float | None) -> None:
    table = Table(
        "target",
        "large\nshare",
        "quality",
        "rel.\nquality",
        "rel.\ncost",
        "text-only\nshare",
        "text-only\nrel. q.",
        "random\nrel. q.",
        title="auto router: quality and cost against the large share",
    )
    for row in report.targets:
        mark = "*" if configured is not None and abs(row.target - configured) < 1e-9 else ""
        table.add_row(
            f"{row.target:.2f}{mark}",
            f"{row.auto.large_share:.3f}",
            f"{row.auto.quality:.3f}",
            f"{row.auto.relative_quality:.3f}",
            f"{row.auto.relative_cost:.3f}",
            f"{row.text_only.large_share:.3f}",
            f"{row.text_only.relative_quality:.3f}",
            f"{row.random.relative_quality:.3f}",
        )
    out.print(table)
    small = report.all_small
    out.print(
        f"{report.items} items, {report.needs_large_share:.1%} need large. "
        f"all-large: quality {report.all_large.quality:.3f}, cost 1.000; "
        f"all-small: quality {small.quality:.3f}, cost {small.relative_cost:.3f} "
        f"(a small call costs 1/{report.cost_ratio:g} of a large one).\n"
        f"ranking (ROC AUC of the score for needs-large): with retrieval signals "
        f"{report.auc:.3f}, prompt text only {report.auc_text_only:.3f}.\n"
        f"window {report.window}; one warm-up pass, then measured in file order."
        + (" * the configured target." if configured is not None else ""),
        highlight=False,
        soft_wrap=True,
    )

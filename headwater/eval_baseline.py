"""The golden-set gate's baseline: the default configuration's nDCG@10 on the committed
golden set (``tests/data/golden``), the tolerance the gate allows below it, and the other
configurations' figures for information.

A change that lowers retrieval quality on purpose rewrites the file with
:data:`UPDATE_COMMAND` in the same commit, and the commit message carries the new figure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from headwater.eval_report import EvaluationReport

GOLDEN_DIR = Path("tests/data/golden")
GOLDEN_SPLIT = "train"
UPDATE_COMMAND = (
    f"headwater eval retrieval {GOLDEN_DIR} --split {GOLDEN_SPLIT} --start-kafka "
    f"--write-baseline {GOLDEN_DIR / 'baseline.json'}"
)


class ConfigurationFigures(BaseModel):
    """One configuration's figures when the baseline was recorded (information only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float


class Baseline(BaseModel):
    """What the gate holds the default configuration to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    split: str
    documents: int
    queries: int
    configuration: str = Field(description="The default configuration when recorded.")
    ndcg_at_10: float = Field(description="Its nDCG@10: the figure the gate holds.")
    tolerance: float = Field(ge=0, le=1, description="Absolute nDCG@10 the gate forgives.")
    recorded_at: str
    update_command: str = UPDATE_COMMAND
    configurations: dict[str, ConfigurationFigures] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_report(cls, report: EvaluationReport, *, tolerance: float) -> Baseline:
        """The baseline ``report`` sets (its default configuration must be scored)."""
        default = report.score(report.default)
        return cls(
            dataset=report.dataset,
            split=report.split,
            documents=report.documents,
            queries=report.queries,
            configuration=report.default,
            ndcg_at_10=default.ndcg_at_10,
            tolerance=tolerance,
            recorded_at=datetime.now(UTC).date().isoformat(),
            configurations={
                score.configuration: ConfigurationFigures(
                    ndcg_at_10=score.ndcg_at_10,
                    recall_at_100=score.recall_at_100,
                    mrr_at_10=score.mrr_at_10,
                )
                for score in report.scores
            },
        )

    @property
    def floor(self) -> float:
        """The lowest nDCG@10 the gate passes."""
        return round(self.ndcg_at_10 - self.tolerance, 4)

    def shortfall(self, report: EvaluationReport) -> str | None:
        """Why ``report``'s default configuration fails the gate, or None if it passes."""
        measured = report.score(report.default).ndcg_at_10
        if measured >= self.floor:
            return None
        return (
            f"retrieval quality dropped: {report.default} scores nDCG@10 {measured:.4f} on "
            f"{report.dataset}, below the baseline {self.ndcg_at_10:.4f} ({self.configuration}) "
            f"minus the tolerance {self.tolerance} = {self.floor:.4f}.\n"
            "If the drop is deliberate, record the new baseline in the same commit and put "
            f"the new figure in its message:\n    {self.update_command}"
        )

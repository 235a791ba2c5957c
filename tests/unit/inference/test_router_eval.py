from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater.cli import app
from inference.router_eval import EvalFileError, evaluate, load_items

# Two items need large (code with no sources; a lookup whose sources hold nothing), two
# do not (a lookup with a strong source; a greeting). The two lookups differ by one
# city name, so only the retrieval signals tell them apart.
ITEMS: list[dict[str, object]] = [
    {"question": "Write a Python function that merges date ranges.", "needs": "large"},
    {
        "question": "What is the per diem for Berlin?",
        "needs": "small",
        "hits": 5,
        "top_score": 0.9,
        "context_tokens": 900,
        "retrieval": True,
    },
    {"question": "What is the per diem for Lisbon?", "needs": "large", "retrieval": True},
    {"messages": [{"role": "user", "content": "hi"}], "needs": "small"},
]


def _write(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def test_eval_on_a_small_file_gives_the_expected_numbers(tmp_path: Path) -> None:
    items = load_items(_write(tmp_path / "set.jsonl", ITEMS))
    report = evaluate(items, targets=[0.5], cost_ratio=10, window=4)
    row = report.targets[0]
    # The two needs-large items score highest: half go large, all adequately served.
    assert (row.auto.large_share, row.auto.quality) == (0.5, 1.0)
    assert row.auto.relative_cost == pytest.approx(0.5 + 0.5 / 10)
    assert row.random.relative_quality == pytest.approx(0.5 + 0.5 * 0.5)
    assert (report.all_small.quality, report.all_small.relative_cost) == (0.5, 0.1)
    assert report.needs_large_share == 0.5
    # Prompt text alone cannot order the two lookups: they tie (a half of one pair).
    assert (report.auc, report.auc_text_only) == (1.0, 0.875)


def test_quality_numbers_replace_adequacy(tmp_path: Path) -> None:
    graded: list[dict[str, object]] = [
        {"question": "q1", "needs": "small", "quality_small": 0.6, "quality_large": 0.8},
        {"question": "q2", "needs": "large", "quality_small": 0.2, "quality_large": 1.0},
    ]
    items = load_items(_write(tmp_path / "set.jsonl", graded))
    report = evaluate(items, targets=[0.0, 1.0], window=10)
    never, always = report.targets
    assert never.auto.quality == pytest.approx(0.4)
    assert always.auto.quality == pytest.approx(0.9) == report.all_large.quality
    assert never.auto.relative_quality == pytest.approx(0.4 / 0.9)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "Invalid JSON"),
        ('{"question": "q"}', "needs: Field required"),
        ('{"question": "q", "needs": "medium"}', "needs: Input should be 'small' or 'large'"),
        ('{"question": "q", "needs": "small", "hits": true}', "hits: Input should be"),
        ('{"question": "q", "needs": "small", "top_score": 3}', "top_score"),
        ('{"needs": "small"}', "exactly one of 'question' and 'messages'"),
        ('{"question": "q", "needs": "small", "quality_small": 1}', "both 'quality_small'"),
        ('{"question": "q", "needs": "small", "colour": "red"}', "colour: Extra inputs"),
        ('{"question": "q", "needs": "small", "hits": 2}', "'top_score' is needed"),
    ],
)
def test_a_bad_line_is_named_with_what_is_wrong(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(ITEMS[0]) + "\n\n" + line + "\n")
    with pytest.raises(EvalFileError) as info:
        load_items(path)
    assert "set.jsonl:3: " in str(info.value) and problem in str(info.value)


def test_cli_prints_a_table(tmp_path: Path) -> None:
    path = _write(tmp_path / "set.jsonl", ITEMS)
    args = ["router", "eval", str(path), "--target-share", "0.5", "--window", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "large" in result.stdout and "0.50" in result.stdout
    assert "with retrieval signals 1.000, prompt text only 0.875" in result.stdout


def test_cli_json_parses_and_covers_the_sweep(tmp_path: Path) -> None:
    path = _write(tmp_path / "set.jsonl", ITEMS)
    result = CliRunner().invoke(app, ["router", "eval", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    targets = [row["target"] for row in report["targets"]]
    assert {0.1, 0.5, 0.9, report["configured_target"]} <= set(targets)
    assert report["items"] == 4 and report["cost_ratio"] == 10.0


def test_cli_bad_line_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(ITEMS[0]) + "\n" + '{"question": "q", "needs": "huge"}\n')
    result = CliRunner().invoke(app, ["router", "eval", str(path)])
    assert result.exit_code == 2
    assert "set.jsonl:2: needs:" in result.stderr


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["router", "eval", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_cli_rejects_a_target_outside_0_1(tmp_path: Path) -> None:
    path = _write(tmp_path / "set.jsonl", ITEMS)
    result = CliRunner().invoke(app, ["router", "eval", str(path), "--target-share", "1.5"])
    assert result.exit_code == 2
    assert "between 0 and 1" in result.stderr

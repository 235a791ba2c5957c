"""``headwater router train`` and ``eval`` end to end on a small file, with the prompt
embeddings put in the cache beforehand (no embedding model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.settings import Settings
from headwater.router_cli import router_app
from inference.router_data import cache_path, load_outcomes
from inference.router_model import RouterModel


@pytest.fixture
def outcome_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(300):
        hard = i % 3 == 0  # the strong model wins on every third prompt
        rows.append(
            {
                "id": f"t/{i}",
                "prompt": f"{'prove' if hard else 'name'} thing {i}",
                "strong_score": 1,
                "weak_score": 0 if hard else int(rng.integers(0, 2)),
            }
        )
    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _cache_embeddings(outcome_file: Path, cache_dir: Path) -> None:
    data = load_outcomes([outcome_file])
    settings = Settings()
    variant = f"{settings.embedding_backend}-{settings.embedding_dtype}"
    rng = np.random.default_rng(1)
    vectors = rng.normal(0, 1, (len(data), 384))
    vectors[:, 0] += 3.0 * np.array(["prove" in p for p in data.prompts])  # the signal
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    path = cache_path(
        data.prompts, model_name=settings.embedding_model, cache_dir=cache_dir / variant
    )
    path.parent.mkdir(parents=True)
    np.save(path, vectors.astype(np.float32))


def test_train_writes_an_artifact_and_eval_reports_router_and_random(
    outcome_file: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _cache_embeddings(outcome_file, cache)
    artifact = tmp_path / "router.json"
    runner = CliRunner()
    trained = runner.invoke(
        router_app,
        ["train", str(outcome_file), "--out", str(artifact), "--cache-dir", str(cache)],
    )
    assert trained.exit_code == 0, trained.output
    model = RouterModel.load(artifact)
    assert model.meta["data_sha256"] == load_outcomes([outcome_file]).sha256
    assert set(model.meta["rows"]) == {"train", "valid", "test"}
    args = ["eval", str(outcome_file), "--router", str(artifact), "--cache-dir", str(cache)]
    result = runner.invoke(router_app, [*args, "--json", "--split", "all", "--rounds", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for member in ("router", "random"):
        assert {"apgr", "cpt50", "cpt80", "strong_share_at_95"} <= report[member].keys()
    assert report["router"]["apgr"] > report["random"]["apgr"]
    text = runner.invoke(router_app, [*args, "--rounds", "20"])
    assert text.exit_code == 0 and "strong_share_at_95" in text.stdout


def test_a_bad_file_is_named_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n')
    result = CliRunner().invoke(router_app, ["eval", str(path)])
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.output

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.router_data import SPLIT_DEFINITION
from inference.router_metrics import metrics_of
from inference.router_model import (
    DEFAULT_ARTIFACT,
    TEXT_FEATURES,
    RouterModel,
    shipped_model,
    text_features,
)
from inference.router_training import Candidate, _gradients, fit, targets


def _data(n: int = 600, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts = [f"question {i}" + "?" * (i % 3) for i in range(n)]
    y = (x[:, 0] + 0.3 * rng.normal(0, 1, n) > 0).astype(float)
    return x, texts, y


def test_text_features_are_cheap_bounded_numbers() -> None:
    features = text_features("What is 2 + 2?\nA. 3\nB. 4")
    assert len(features) == len(TEXT_FEATURES)
    assert features[TEXT_FEATURES.index("question_marks")] == 1.0
    assert text_features("")[0] == 0.0


@pytest.mark.parametrize("hidden", [0, 4])
def test_gradients_match_finite_differences(hidden: int) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, (12, 5)), rng.random(12)
    sizes = [5, *([hidden] if hidden else []), 1]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        params += [rng.normal(0, 1, (fan_in, fan_out)), rng.normal(0, 0.1, fan_out)]

    def loss() -> float:
        h = x
        for i in range(0, len(params) - 2, 2):
            h = np.maximum(h @ params[i] + params[i + 1], 0.0)
        p = 1 / (1 + np.exp(-(h @ params[-2] + params[-1])[:, 0]))
        cross = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        return float(cross + 0.05 / 2 * sum(np.sum(w * w) for w in params[::2]))

    grads = _gradients(params, x, y, 0.05)
    for p, g in zip(params, grads, strict=True):
        index = np.unravel_index(0, p.shape)
        p[index] += 1e-6
        up = loss()
        p[index] -= 2e-6
        down = loss()
        p[index] += 1e-6
        assert g[index] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("hidden", [0, 8])
def test_a_fitted_model_ranks_the_signal_and_survives_a_round_trip(hidden: int) -> None:
    x, texts, y = _data()
    model = fit(x, texts, y, Candidate("strong_only", hidden, 1e-3, epochs=200), meta={"v": 1})
    logits = model.logits(x, texts)
    assert np.corrcoef(logits, x[:, 0])[0, 1] > 0.8
    again = RouterModel.from_dict(model.to_dict())
    assert again.logits(x, texts) == pytest.approx(logits, abs=1e-3)
    assert again.meta == {"v": 1}
    assert model.logit(None, "q") == pytest.approx(model.logit(model.embedding_mean, "q"))
    with pytest.raises(ValueError, match="8-float embedding"):
        model.logit([0.1, 0.2], "q")


def test_win_rate_targets_count_a_tie_as_half() -> None:
    strong, weak = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])
    assert targets(strong, weak, "win_rate").tolist() == [1.0, 0.5, 0.0]
    assert targets(strong, weak, "strong_only").tolist() == [1.0, 0.0, 0.0]


def test_an_artifact_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"format": "something/2"}')
    with pytest.raises(ValueError, match="format"):
        RouterModel.load(path)


def test_the_shipped_router_is_small_versioned_and_names_its_data() -> None:
    assert DEFAULT_ARTIFACT.stat().st_size < 400_000
    model = shipped_model()
    assert model.dim == 384 and model.version
    assert model.meta["split"] == SPLIT_DEFINITION
    assert len(model.meta["data_sha256"]) == 64
    assert model.meta["embedding_model"] == "all-MiniLM-L6-v2"
    test = model.meta["metrics"]["test"]
    assert {"apgr", "cpt50", "cpt80", "strong_share_at_95"} <= test.keys()


def test_the_metrics_of_a_fitted_model_beat_random_on_its_signal() -> None:
    x, texts, y = _data(seed=4)
    model = fit(x, texts, y, Candidate("win_rate", 0, 1e-3, epochs=200))
    strong, weak = y, np.zeros_like(y)
    assert metrics_of(model.logits(x, texts), strong, weak).apgr > 0.6  # oracle 0.745

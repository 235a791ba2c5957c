"""Fits the learned router (``inference.router_model``) in numpy: a
cross-entropy loss with L2, for a logistic regression or a one-hidden-layer MLP
(mini-batch Adam, seeded: the same data and candidate give the same model).

Targets (``LABELS``), from a prompt's strong and weak grades:

- ``strong_only``: 1 when the strong model scored higher, else 0 (ties count as "weak
  suffices": the strong call buys nothing there).
- ``win_rate``: RouteLLM's soft target, 1 when the strong model won, 0.5 on a tie, 0
  when the weak one won; its log-odds rank prompts by expected gain.

``select`` fits every candidate of a grid on the training part, keeps the one with the
best APGR on the validation part (never the test part), and refits it on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from inference.router_data import OutcomeSet, split_of
from inference.router_metrics import SCALARS, metrics_of
from inference.router_model import Floats, Layer, RouterModel, text_features

Label = Literal["strong_only", "win_rate"]
LABELS: tuple[Label, ...] = ("strong_only", "win_rate")


def targets(strong: Floats, weak: Floats, label: Label) -> Floats:
    """The training target of each prompt, in [0, 1]."""
    if label == "strong_only":
        return (strong > weak).astype(np.float64)
    result: Floats = np.where(strong > weak, 1.0, np.where(strong < weak, 0.0, 0.5))
    return result


@dataclass(frozen=True)
class Candidate:
    """One point of the model grid (and how it is optimised)."""

    label: Label
    hidden: int  # 0 for logistic regression
    l2: float
    epochs: int = 30
    learning_rate: float = 0.003
    batch_size: int = 256

    def name(self) -> str:
        kind = f"mlp{self.hidden}" if self.hidden else "logistic"
        return f"{kind}/{self.label}/l2={self.l2:g}"


DEFAULT_GRID: tuple[Candidate, ...] = tuple(
    Candidate(label, hidden, l2)
    for label in LABELS
    for hidden in (0, 32, 64)
    for l2 in (1e-4, 1e-3, 1e-2, 3e-2)
)


def fit(
    embeddings: Floats,
    texts: Sequence[str],
    y: Floats,
    candidate: Candidate,
    *,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> RouterModel:
    """A model fitted to targets ``y`` in [0, 1] (mini-batch Adam, L2 on the weights)."""
    raw = np.array([text_features(t) for t in texts], dtype=np.float64)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    std[std < 1e-9] = 1.0  # a constant feature stays zero, whatever rounding does
    # A unit-length embedding's components are about 1/sqrt(dim): scaled to about unit
    # size while training, so one learning rate suits them and the text features; the
    # scale is folded back into the first layer's weights afterwards.
    scale = np.sqrt(embeddings.shape[1])
    x = np.hstack([embeddings.astype(np.float64) * scale, (raw - mean) / std])
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *([candidate.hidden] if candidate.hidden else []), 1]
    params: list[Floats] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        params.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)))
        params.append(np.zeros(fan_out))
    params[-2] *= 0.1  # a small output layer starts near the base rate
    params[-1][:] = np.log(np.mean(y) + 1e-6) - np.log(1.0 - np.mean(y) + 1e-6)
    _adam(params, x, y, candidate, rng)
    params[0][: embeddings.shape[1]] *= scale
    layers = [Layer(params[i], params[i + 1]) for i in range(0, len(params), 2)]
    return RouterModel(
        layers=layers,
        feature_mean=mean,
        feature_std=std,
        embedding_mean=embeddings.mean(axis=0).astype(np.float64),
        meta=meta or {},
    )


def _adam(
    params: list[Floats], x: Floats, y: Floats, c: Candidate, rng: np.random.Generator
) -> None:
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2 = 0.9, 0.999
    step = 0
    for _ in range(c.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), c.batch_size):
            rows = order[start : start + c.batch_size]
            step += 1
            for i, g in enumerate(_gradients(params, x[rows], y[rows], c.l2)):
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                m_hat = m[i] / (1 - beta1**step)
                v_hat = v[i] / (1 - beta2**step)
                params[i] -= c.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)


def _gradients(params: list[Floats], x: Floats, y: Floats, l2: float) -> list[Floats]:
    """Gradients of mean cross-entropy plus ``l2 * |W|^2 / 2`` (biases unpenalised)."""
    activations = [x]
    for i in range(0, len(params) - 2, 2):
        activations.append(np.maximum(activations[-1] @ params[i] + params[i + 1], 0.0))
    logits = activations[-1] @ params[-2] + params[-1]
    delta = (1.0 / (1.0 + np.exp(-logits)) - y[:, None]) / len(y)
    grads: list[Floats] = [np.zeros(0)] * len(params)
    for i in range(len(params) - 2, -1, -2):
        inputs = activations[i // 2]
        grads[i] = inputs.T @ delta + l2 * params[i]
        grads[i + 1] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[i].T) * (inputs > 0)
    return grads


@dataclass(frozen=True)
class Selection:
    """The grid's results on the validation part, best first, and the chosen candidate
    with its model fitted on the training part."""

    chosen: Candidate
    model: RouterModel
    validation_apgr: dict[str, float]


def select(
    train: tuple[Floats, Sequence[str], Floats, Floats],
    valid: tuple[Floats, Sequence[str], Floats, Floats],
    grid: Sequence[Candidate] = DEFAULT_GRID,
) -> Selection:
    """The candidate with the best validation APGR; each part is (embeddings, texts,
    strong grades, weak grades)."""
    results: dict[str, float] = {}
    best: tuple[float, Candidate, RouterModel] | None = None
    for candidate in grid:
        model = fit(train[0], train[1], targets(train[2], train[3], candidate.label), candidate)
        score = metrics_of(model.logits(valid[0], valid[1]), valid[2], valid[3]).apgr
        results[candidate.name()] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, candidate, model)
    if best is None:
        raise ValueError("an empty grid")
    ranked = dict(sorted(results.items(), key=lambda item: -item[1]))
    return Selection(best[1], best[2], ranked)


@dataclass(frozen=True)
class TrainedRouter:
    """A fitted router and what it was fitted and judged on."""

    model: RouterModel
    selection: Selection
    validation: dict[str, float]  # the chosen candidate, fitted on train, on validation
    test: dict[str, float]  # the refit model on the test part (reported, never used)


def train_router(
    outcomes: OutcomeSet,
    embeddings: Floats,
    *,
    meta: dict[str, Any],
    grid: Sequence[Candidate] = DEFAULT_GRID,
) -> TrainedRouter:
    """Selects a candidate on train → validation, refits it on train + validation, and
    measures the refit model on the test part. ``meta`` goes into the artifact."""
    parts = np.array([split_of(p) for p in outcomes.prompts])

    def part(*names: str) -> tuple[Floats, list[str], Floats, Floats]:
        mask = np.isin(parts, names)
        prompts = [p for p, keep in zip(outcomes.prompts, mask, strict=True) if keep]
        return embeddings[mask], prompts, outcomes.strong[mask], outcomes.weak[mask]

    train, valid, test = part("train"), part("valid"), part("test")
    selection = select(train, valid, grid)
    chosen, first = selection.chosen, selection.model
    both = part("train", "valid")
    rows = {"train": len(train[1]), "valid": len(valid[1]), "test": len(test[1])}
    model = fit(
        both[0],
        both[1],
        targets(both[2], both[3], chosen.label),
        chosen,
        meta={
            **meta,
            "label": chosen.label,
            "candidate": chosen.name(),
            "hyperparameters": asdict(chosen),
            "rows": rows,
            "selection_validation_apgr": selection.validation_apgr,
        },
    )
    result = TrainedRouter(
        model,
        selection,
        _figures(first.logits(valid[0], valid[1]), valid[2], valid[3]),
        _figures(model.logits(test[0], test[1]), test[2], test[3]),
    )
    model.meta["metrics"] = {"validation": result.validation, "test": result.test}
    return result


def _figures(scores: Floats, strong: Floats, weak: Floats) -> dict[str, float]:
    metrics = metrics_of(scores, strong, weak)
    return {name: round(getattr(metrics, name), 4) for name in SCALARS}

"""The learned router's model: a prompt's embedding and a few cheap text features in,
the log-odds that the strong (large) model is needed out. Pure numpy, no model calls.

The model is a logistic regression or a one-hidden-layer MLP over the all-MiniLM-L6-v2
embedding (384 floats, unit length) of the question and ``TEXT_FEATURES``, trained by
``headwater router train`` (``inference.router_training``) and shipped as one JSON
artifact (``inference/data/router.json``) with its version, the sha256 of the data it
was fitted on, the split and the metrics it reached. One decision is one small matrix
product: microseconds, given the embedding (see ``bench/router_latency.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "headwater.router/1"
DEFAULT_ARTIFACT = Path(__file__).with_name("data") / "router.json"
Floats = npt.NDArray[np.float64]
TEXT_FEATURES: tuple[str, ...] = (
    "log_chars",  # log(1 + characters)
    "log_words",  # log(1 + whitespace-separated words in the first 2,000 characters)
    "log_lines",  # log(1 + line breaks)
    "digit_share",  # ASCII digits per character
    "symbol_share",  # characters that are neither word characters nor whitespace
    "non_ascii_share",  # characters outside ASCII
    "question_marks",  # up to 3
)
_SCAN_CHARS = 2000  # a pasted log must not cost milliseconds; the head says enough
# Character classes counted by C-speed string operations, not a Python loop per character.
_NOT_DIGIT = re.compile(r"[^0-9]+")
_NOT_SYMBOL = re.compile(r"[\w\s]+")  # a symbol is neither a word character nor space
_ASCII = re.compile(r"[\x00-\x7f]+")


def text_features(text: str) -> list[float]:
    """``TEXT_FEATURES`` of a question, in that order (raw, before standardising)."""
    head = text[:_SCAN_CHARS]
    n = max(len(head), 1)
    return [
        math.log1p(len(text)),
        math.log1p(len(head.split())),
        math.log1p(text.count("\n")),
        len(_NOT_DIGIT.sub("", head)) / n,
        len(_NOT_SYMBOL.sub("", head)) / n,
        len(_ASCII.sub("", head)) / n,
        float(min(head.count("?"), 3)),
    ]


@dataclass(frozen=True)
class Layer:
    """One dense layer: ``x @ weight + bias``."""

    weight: Floats  # (inputs, outputs)
    bias: Floats  # (outputs,)


class RouterModel:
    """A trained router: ``logit(embedding, text)`` is the log-odds that the strong model
    is needed. ``embedding_mean`` stands in for a missing embedding (the model then
    sees the text features only: a degraded, documented mode)."""

    def __init__(
        self,
        *,
        layers: Sequence[Layer],
        feature_mean: Floats,
        feature_std: Floats,
        embedding_mean: Floats,
        meta: dict[str, Any],
    ) -> None:
        self.layers = tuple(layers)
        self.feature_mean = feature_mean
        self.feature_std = feature_std
        self.embedding_mean = embedding_mean
        self.meta = meta
        self.dim = int(embedding_mean.shape[0])
        self.version = str(meta.get("version", "unversioned"))

    def inputs(self, embeddings: Floats, texts: Sequence[str]) -> Floats:
        """The model's input rows: embeddings, then standardised text features."""
        raw = np.array([text_features(t) for t in texts], dtype=np.float64)
        scaled = (raw.reshape(len(texts), -1) - self.feature_mean) / self.feature_std
        result: Floats = np.hstack([np.asarray(embeddings, dtype=np.float64), scaled])
        return result

    def logits_of_inputs(self, x: Floats) -> Floats:
        """Log-odds for prepared input rows (see :meth:`inputs`)."""
        for layer in self.layers[:-1]:
            x = np.maximum(x @ layer.weight + layer.bias, 0.0)
        last = self.layers[-1]
        out: Floats = (x @ last.weight + last.bias)[:, 0]
        return out

    def logits(self, embeddings: Floats, texts: Sequence[str]) -> Floats:
        """Log-odds for many prompts at once (training, evaluation)."""
        return self.logits_of_inputs(self.inputs(embeddings, texts))

    def logit(self, embedding: Sequence[float] | Floats | None, text: str) -> float:
        """Log-odds for one request; ``embedding`` None uses the training mean."""
        if embedding is None:
            vector = self.embedding_mean
        else:
            vector = np.asarray(embedding, dtype=np.float64)
            if vector.shape != (self.dim,):
                raise ValueError(f"the router expects a {self.dim}-float embedding")
        return float(self.logits(vector.reshape(1, -1), [text])[0])

    def to_dict(self) -> dict[str, Any]:
        """The artifact as JSON-ready data (weights rounded to 6 significant digits)."""
        return {
            "format": FORMAT,
            **self.meta,
            "text_features": list(TEXT_FEATURES),
            "feature_mean": self.feature_mean.tolist(),
            "feature_std": self.feature_std.tolist(),
            "embedding_mean": _rounded(self.embedding_mean),
            "layers": [
                {"weight": _rounded(layer.weight), "bias": _rounded(layer.bias)}
                for layer in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterModel:
        """The model of an artifact; raises ValueError on another format or features."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a router artifact of format {FORMAT}")
        if tuple(data["text_features"]) != TEXT_FEATURES:
            raise ValueError("the artifact was trained on other text features")
        reserved = ("format", "text_features", "feature_mean", "feature_std")
        meta = {k: v for k, v in data.items() if k not in (*reserved, "embedding_mean", "layers")}
        return cls(
            layers=[
                Layer(np.array(layer["weight"], dtype=np.float64), np.array(layer["bias"]))
                for layer in data["layers"]
            ],
            feature_mean=np.array(data["feature_mean"], dtype=np.float64),
            feature_std=np.array(data["feature_std"], dtype=np.float64),
            embedding_mean=np.array(data["embedding_mean"], dtype=np.float64),
            meta=meta,
        )

    def save(self, path: Path) -> None:
        """Writes the artifact as compact JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> RouterModel:
        """Reads an artifact written by :meth:`save`."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def shipped_model() -> RouterModel:
    """The router shipped with the package (read once per process)."""
    return RouterModel.load(DEFAULT_ARTIFACT)


def _rounded(values: Floats) -> Any:
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(values).tolist()

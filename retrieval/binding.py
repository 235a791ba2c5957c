"""A collection is bound to the embedding model and chunking that built it.

Vectors of two models never mix: a search embeds the question with this process's model
and compares it with the stored vectors, so a collection built by another model (even
one of the same dimension) would answer with nonsense and no error. Each collection
therefore records, in its ``__documents`` companion, the :class:`CollectionBinding` it
was built with: the model's name, its dimension, the chunking settings, and a *probe*
(the model's own embedding of a fixed sentence). The probe is the engine-independent
identity: the fp32, bf16 and int8 engines of one model give nearly the same vector for
it (cosine above :data:`PROBE_MIN_COSINE`), while other weights under the same name do
not. A process whose binding does not match the collection behind the alias refuses to
start (:class:`CollectionMismatch` says what to do).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import HeadwaterError
from core.settings import Settings
from retrieval.embedding import Embedder
from retrieval.schema import versioned_collection
from retrieval.store import VectorStore

_log = logging.getLogger(__name__)

PROBE_TEXT = "Headwater binds each collection to the model that embedded it."
# One model's engines agree far above this (int8 against fp32: ~0.99); two different
# sentence encoders, even of one dimension, fall far below.
PROBE_MIN_COSINE = 0.95


class CollectionMismatch(HeadwaterError):
    """The collection behind the alias was built by another model or chunking."""


@dataclass(frozen=True)
class CollectionBinding:
    """What built a collection; every vector in it comes from this model and chunking."""

    model: str
    dim: int
    chunk_tokens: int
    chunk_overlap_tokens: int
    probe: tuple[float, ...]
    # Informational: the engine that built it (any engine of the same model may serve).
    engine: str = ""
    # The ingest consumer group that feeds this collection (its offsets are its progress).
    consumer_group: str = ""
    built_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def of(
        cls, settings: Settings, embedder: Embedder, *, consumer_group: str | None = None
    ) -> CollectionBinding:
        """This process's binding: its model, chunking and the model's probe vector."""
        (probe,) = embedder.embed([PROBE_TEXT])
        return cls(
            model=embedder.model_name,
            dim=embedder.dim,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            probe=tuple(round(float(v), 5) for v in probe),
            engine=settings.embedding_backend,
            consumer_group=consumer_group or settings.consumer_group,
        )

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["probe"] = list(self.probe)
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CollectionBinding:
        return cls(
            model=str(payload["model"]),
            dim=int(payload["dim"]),
            chunk_tokens=int(payload["chunk_tokens"]),
            chunk_overlap_tokens=int(payload["chunk_overlap_tokens"]),
            probe=tuple(float(v) for v in payload["probe"]),
            engine=str(payload.get("engine", "")),
            consumer_group=str(payload.get("consumer_group", "")),
            built_at=str(payload.get("built_at", "")),
        )

    def differences(self, other: CollectionBinding) -> list[str]:
        """How ``other`` (a process) differs from this (a collection); empty: it may serve."""
        found = []
        if self.model != other.model:
            found.append(f"model {self.model!r} vs {other.model!r}")
        if self.dim != other.dim:
            found.append(f"dimension {self.dim} vs {other.dim}")
        elif _cosine(self.probe, other.probe) < PROBE_MIN_COSINE:
            found.append(
                f"weights (the probe sentence embeds differently: cosine "
                f"{_cosine(self.probe, other.probe):.3f} < {PROBE_MIN_COSINE})"
            )
        chunking = (self.chunk_tokens, self.chunk_overlap_tokens)
        if chunking != (other.chunk_tokens, other.chunk_overlap_tokens):
            found.append(
                f"chunking {self.chunk_tokens}/{self.chunk_overlap_tokens} tokens vs "
                f"{other.chunk_tokens}/{other.chunk_overlap_tokens}"
            )
        return found

    def describe(self) -> str:
        return (
            f"{self.model} ({self.dim} dims, chunks of {self.chunk_tokens} tokens with "
            f"{self.chunk_overlap_tokens} overlap)"
        )


def bind_collection(store: VectorStore, wanted: CollectionBinding, *, alias: str) -> None:
    """Check the collection behind the alias against this process's binding; record it
    on a collection that has none. Raises :class:`CollectionMismatch` on a difference."""
    recorded = store.binding()
    name = store.collection
    if recorded is None and store.count() == 0:  # new (or empty): nothing to mismatch
        store.record_binding(wanted.to_payload())
        return
    if recorded is None:
        # Built before bindings were recorded: its name carries the model and dimension
        # (versioned_collection), so claim it only when those match.
        if name != versioned_collection(alias, wanted.model, wanted.dim):
            raise CollectionMismatch(
                f"collection {name!r} behind alias {alias!r} records no embedding model, and "
                f"its name does not match {wanted.describe()}. Build one for this model "
                "with 'headwater reindex' (docs/operating.md, Upgrades)."
            )
        _log.warning("collection %s: recording its binding, %s", name, wanted.describe())
        store.record_binding(wanted.to_payload())
        return
    binding = CollectionBinding.from_payload(recorded)
    differences = binding.differences(wanted)
    if differences:
        raise CollectionMismatch(
            f"collection {name!r} behind alias {alias!r} was built with "
            f"{binding.describe()}; this process is configured for {wanted.describe()} "
            f"({'; '.join(differences)}). Either set HEADWATER_EMBEDDING_MODEL, "
            "HEADWATER_EMBEDDING_MODEL_PATH and HEADWATER_CHUNK_* back to what built it, "
            "or build a collection for this configuration with 'headwater reindex' "
            "(it replays the documents topic while the old one keeps serving, then "
            "switches the alias) and restart."
        )


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0

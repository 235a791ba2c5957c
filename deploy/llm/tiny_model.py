"""Build a tiny random-weights Llama that vLLM can serve, for tests that need speed, not sense.

Two layers, hidden size 64, a byte-level BPE tokenizer trained in well under a second on a
built-in corpus, and a ChatML chat template. Its answers are printable gibberish that never
ends before max_tokens, but every endpoint (chat, streaming, usage) behaves as with a real
model. Output appears atomically (temporary
sibling folder, then rename). Run inside the LLM virtualenv (deploy/llm/setup.sh):

    .venv-llm/bin/python deploy/llm/tiny_model.py --out .cache/models/tiny-llama
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Permission-safe retrieval returns only documents the user may read.",
    "What is the capital of France? The capital of France is Paris.",
    "Answer the question using only the context below, and cite your sources.",
    "Documents are split into chunks, embedded, and stored with their access lists.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000, a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def build_tokenizer(vocab_size: int) -> object:
    """Train a byte-level BPE on CORPUS and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def unprintable_ids(tokenizer: object) -> list[int]:
    """Ids of special tokens and of tokens that decode to blank or unprintable text."""
    special = set(tokenizer.all_special_ids)  # type: ignore[attr-defined]
    ids = []
    for token_id in range(len(tokenizer)):  # type: ignore[arg-type]
        text = tokenizer.decode([token_id])  # type: ignore[attr-defined]
        if token_id in special or not text.strip() or not text.isprintable() or "\ufffd" in text:
            ids.append(token_id)
    return ids


def build_model(tokenizer: object, seed: int) -> object:
    """A 2-layer Llama with random bfloat16 weights sized to the tokenizer."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,  # the smallest head size vLLM's CPU attention supports
        max_position_embeddings=4096,
        initializer_range=0.5,  # large random weights: output varies with the prompt
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        dtype=torch.bfloat16,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    # Zeroed (tied) embedding rows give those tokens logit 0, below the best random logit,
    # so greedy output never picks special, blank or unprintable tokens: answers are
    # printable gibberish that runs to max_tokens (finish_reason "length").
    with torch.no_grad():
        model.get_input_embeddings().weight[unprintable_ids(tokenizer)] = 0
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to create")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    if out.exists() and not args.force:
        print(f"tiny_model: {out} exists; nothing to do (use --force to redo)")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        tokenizer = build_tokenizer(args.vocab_size)
        build_model(tokenizer, args.seed).save_pretrained(tmp)  # type: ignore[attr-defined]
        tokenizer.save_pretrained(tmp)  # type: ignore[attr-defined]
        for path in tmp.iterdir():
            path.chmod(0o644)  # safetensors writes 0600; the folder is shared like the others
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"tiny_model: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

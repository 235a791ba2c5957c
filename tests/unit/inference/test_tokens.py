"""Prompt budgets in the served model's tokens: a byte-level BPE tokenizer trained here on
a few English lines stands in for a model's ``tokenizer.json``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from acl.models import DocumentAcl
from api.chat.prompt import SOURCE_OVERHEAD_TOKENS, fit_sources
from inference.tokens import LargestCount, ModelTokenizer, Utf8Bound, open_token_counter
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import Hit

ENGLISH = "The salary bands are reviewed every January by the committee. " * 4
CHINESE = "薪资等级每年一月由人力资源委员会审查一次。" * 4


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([ENGLISH] * 50, trainer=trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_a_model_tokenizer_counts_what_three_characters_a_token_underestimates(
    tokenizer_file: Path,
) -> None:
    counter = ModelTokenizer(tokenizer_file.parent)  # a folder holding tokenizer.json
    assert counter.count(ENGLISH) < len(ENGLISH) / 3
    # Non-English text: many tokens per character, where the old estimate said a third.
    assert counter.count(CHINESE) > len(CHINESE)
    assert counter.count(CHINESE) > 3 * (len(CHINESE) // 3)


@pytest.mark.parametrize("text", [ENGLISH, CHINESE, "x = [1, 2, 3]  # 🙂 ñ"])
def test_the_byte_bound_is_never_below_a_byte_level_tokenizer(
    tokenizer_file: Path, text: str
) -> None:
    assert Utf8Bound().count(text) >= ModelTokenizer(tokenizer_file).count(text)


def test_two_tiers_are_budgeted_at_the_larger_count(tokenizer_file: Path) -> None:
    both = open_token_counter([tokenizer_file, None])
    assert isinstance(both, LargestCount)
    assert both.count(ENGLISH) == Utf8Bound().count(ENGLISH)
    assert isinstance(open_token_counter([tokenizer_file]), ModelTokenizer)


def _hit(text: str) -> Hit:
    document = DocumentFields(tenant="t", doc_id=text[:8], version=1, acl=DocumentAcl())
    return Hit(id=text[:8], score=0.9, chunk=StoredChunk(document, 0, text))


def test_sources_fit_the_budget_in_model_tokens(tokenizer_file: Path) -> None:
    counter = ModelTokenizer(tokenizer_file)
    hits = [_hit(CHINESE), _hit(ENGLISH)]
    cost = counter.count(CHINESE) + SOURCE_OVERHEAD_TOKENS
    # The Chinese source alone fits exactly (a third of its characters would say it is cheap).
    assert fit_sources(hits, budget_tokens=cost, tokens=counter) == hits[:1]
    assert fit_sources(hits, budget_tokens=cost - 1, tokens=counter) == []

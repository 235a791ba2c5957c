"""The remote embedder against a real vLLM server serving all-MiniLM-L6-v2."""

from __future__ import annotations

import math

import pytest

from core.errors import UpstreamUnavailable
from core.settings import Settings
from retrieval.embedding import RemoteEmbedder, SentenceTransformerEmbedder, open_embedder

pytestmark = pytest.mark.integration

TEXTS = ["Salary bands are reviewed every January.", "Visitor parking is on level minus two."]


def test_remote_vectors_match_the_in_process_model(
    embedding_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    remote = open_embedder(Settings(embedding_url=embedding_url))
    assert isinstance(remote, RemoteEmbedder)
    assert remote.dim == embedder.dim == 384
    for got, want in zip(remote.embed(TEXTS), embedder.embed(TEXTS), strict=True):
        assert math.isclose(sum(g * g for g in got), 1.0, rel_tol=1e-5)
        assert sum(g * w for g, w in zip(got, want, strict=True)) > 0.99
    assert remote.token_offsets(TEXTS[0]) == embedder.token_offsets(TEXTS[0])
    remote.close()


def test_an_unreachable_embedding_server_is_an_outage_the_worker_retries() -> None:
    with pytest.raises(UpstreamUnavailable):
        RemoteEmbedder(base_url="http://127.0.0.1:9/v1", model="m", tokenizer_dir=None, timeout_s=1)

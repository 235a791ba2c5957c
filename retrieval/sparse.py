"""Lexical (BM25) term weights: the one tokenizer both store adapters index and query with.

It is ``qdrant-edge-py``'s own ``Bm25`` (English: Snowball stemmer, English stopwords,
lowercased words), used for the server adapter too: its output is plain term-id hashes
and weights (:class:`~retrieval.schema.SparseTerms`), so a Qdrant server stores exactly
what the embedded engine would, and there is no second tokenizer to drift from the first.

- A document (a chunk, with its title as the embedder sees it) gets BM25's saturated
  term frequency, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / AVG_TERMS))``, with a
  fixed average length: chunks are cut to a token budget, so their lengths are close
  and a running corpus average would add state for little gain.
- A query gets weight 1.0 for each distinct term.
- IDF is not computed here: the collection's ``lexical`` vector has Qdrant's IDF
  modifier, so the engine applies it at query time over the points the caller may read
  (see the adapters' search).

The term ids are hashes of the stemmed terms: changing the language, stemmer or
stopwords changes what a stored vector means, so :data:`LEXICAL_ENCODER` names the
configuration and a change of it needs a re-index (as a new embedding model does).
"""

from __future__ import annotations

import qdrant_edge as qe

from retrieval.schema import SparseTerms

K1 = 1.2
B = 0.75
# Terms per chunk after stopwords, measured on SciFact chunked at the default 200 word
# pieces with their titles: mean 84, median 92, 10th-90th percentile 44-110.
AVG_TERMS = 90.0
LEXICAL_ENCODER = f"bm25-english-snowball-k{K1}-b{B}-avg{AVG_TERMS:g}"
"""Identity of the term weighting stored in the ``lexical`` vector."""


class LexicalEncoder:
    """BM25 term weights of documents and queries (see the module docstring)."""

    def __init__(self) -> None:
        self._model = qe.Bm25(qe.Bm25Config(k=K1, b=B, avg_len=AVG_TERMS, language="english"))

    def encode_document(self, text: str) -> SparseTerms:
        """Saturated term frequencies of a stored chunk's text."""
        return _terms(self._model.embed_document(text))

    def encode_query(self, text: str) -> SparseTerms:
        """Each distinct term of a question, with weight 1.0."""
        return _terms(self._model.embed_query(text))


def _terms(vector: qe.SparseVector) -> SparseTerms:
    return SparseTerms(indices=tuple(vector.indices), values=tuple(vector.values))

"""Which Qdrant servers the server adapter trusts with lexical search: those that count
IDF over the caller's readable set (``SearchParams.idf``, Qdrant 1.19)."""

from __future__ import annotations

import pytest

from retrieval.qdrant_query import minor_version, scopes_idf


@pytest.mark.parametrize(
    ("version", "minor"),
    [("1.18.3", (1, 18)), ("1.19.0", (1, 19)), ("2.0.0-rc1", (2, 0)), ("dev", None), ("", None)],
)
def test_minor_version_reads_major_and_minor(version: str, minor: tuple[int, int] | None) -> None:
    assert minor_version(version) == minor


@pytest.mark.parametrize(
    ("version", "scoped"),
    [("1.18.3", False), ("1.10.0", False), ("1.19.0", True), ("1.20.1", True), ("2.0.0", True)],
)
def test_only_servers_from_1_19_scope_idf(version: str, scoped: bool) -> None:
    assert scopes_idf(version) is scoped


def test_a_version_it_cannot_read_is_not_trusted() -> None:
    assert not scopes_idf("unknown")

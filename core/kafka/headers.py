"""Kafka message headers as one shape: a list of ``(name, bytes)`` pairs.

confluent-kafka hands headers over as a list of pairs (values may be ``None``), faust as
a list or a mapping, and either may carry ``str`` values; everything of ours reads them
through ``header_pairs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Headers = Sequence[tuple[str, bytes]]


def header_pairs(raw: object) -> list[tuple[str, bytes]]:
    """``raw`` headers (pairs or a mapping; ``None`` for none) as ``(str, bytes)`` pairs.
    A header whose value is ``None`` is dropped."""
    if raw is None:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    pairs: list[tuple[str, bytes]] = []
    for key, value in items:  # type: ignore[attr-defined]
        if value is None:
            continue
        pairs.append((str(key), value.encode() if isinstance(value, str) else bytes(value)))
    return pairs

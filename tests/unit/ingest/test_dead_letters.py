"""Reading a dead letter back: filed under its document's key (so its tenant is known),
with the key it had, its reason and whether it was a tombstone."""

from __future__ import annotations

from core.kafka import Record
from ingest.dead_letters import REASON_CHARS, DeadLetter


def _letter(key: bytes | None, headers: dict[str, bytes]) -> DeadLetter:
    return DeadLetter.of(Record(partition=1, offset=7, key=key, value=b"{}", headers=headers))


def test_a_letter_is_its_documents_and_keeps_the_key_it_had() -> None:
    letter = _letter(
        b"acme/wiki:1",
        {
            "x-source-key": b"<b>wrong</b>",
            "x-error": b"message key '<b>wrong</b>' must be 'acme/wiki:1'",
            "x-error-type": b"invalid",
            "x-failed-at": b"2026-12-03T10:00:00+00:00",
        },
    )
    assert (letter.tenant, letter.doc_id, letter.key) == ("acme", "wiki:1", "acme/wiki:1")
    assert letter.source_key == "<b>wrong</b>"
    assert letter.reason.startswith("message key") and letter.error_type == "invalid"
    assert not letter.tombstone


def test_an_unattributed_letter_belongs_to_no_tenant() -> None:
    letter = _letter(b"unattributed/topic/0/12", {"x-error": b"x" * (REASON_CHARS + 50)})
    assert letter.tenant is None and letter.doc_id is None
    assert len(letter.reason) == REASON_CHARS
    assert letter.source_key == "unattributed/topic/0/12"


def test_a_dead_lettered_tombstone_says_so() -> None:
    letter = _letter(b"acme/wiki:2", {"x-source-tombstone": b"true"})
    assert letter.tombstone and letter.tenant == "acme"

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ingest.models import DocumentEvent

VALID = {
    "schema": "headwater.document/1",
    "op": "upsert",
    "tenant": "acme",
    "doc_id": "confluence:1",
    "version": 3,
    "acl": {"groups": ["hr"]},
    "text": "Salary bands",
}


def test_valid_event_round_trips_with_the_schema_alias() -> None:
    event = DocumentEvent.model_validate(VALID)
    assert event.key == "acme/confluence:1"
    assert DocumentEvent.model_validate_json(event.to_json()) == event
    assert b'"schema":"headwater.document/1"' in event.to_json()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"schema": "headwater.document/2"}, "schema"),
        ({"op": "merge"}, "op"),
        ({"text": "  "}, "non-empty 'text'"),
        ({"tenant": "a/b"}, "tenant"),
        ({"version": -1}, "version"),
        ({"acl": {"roles": ["x"]}}, "acl.roles"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_events_are_rejected_with_the_field_named(
    change: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        DocumentEvent.model_validate({**VALID, **change})
    assert problem in str(info.value)


def test_delete_needs_no_text_and_acl_defaults_to_nobody() -> None:
    event = DocumentEvent.model_validate({**VALID, "op": "delete", "text": None, "acl": {}})
    assert not (event.acl.users or event.acl.groups or event.acl.public)

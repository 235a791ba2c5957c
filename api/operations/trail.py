"""Audit queries for one tenant: who was served a document, and one request's record.

Read from the audit topic itself (every replica writes there), from its beginning to its
end as of the query, in a thread: an audit query is rare and must see every replica's
records, not this process's memory. The newest ``limit`` matches are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from api.audit import AuditRecord
from core.kafka import Record


def _records(messages: Iterable[Record], tenant: str) -> Iterable[AuditRecord]:
    for message in messages:
        try:
            record = AuditRecord.model_validate_json(message.value or b"{}")
        except ValidationError:
            continue  # an erasure's record (headwater.erasure/1), or one that does not parse
        if record.tenant == tenant:
            yield record


def matching(
    messages: Iterable[Record],
    *,
    tenant: str,
    wanted: Callable[[AuditRecord], bool],
    limit: int,
) -> tuple[list[AuditRecord], bool]:
    """The newest ``limit`` records of ``tenant`` that are ``wanted``, newest first, and
    whether older ones were left out."""
    kept: deque[AuditRecord] = deque(maxlen=limit)
    seen = 0
    for record in _records(messages, tenant):
        if wanted(record):
            kept.append(record)
            seen += 1
    return list(reversed(kept)), seen > limit


def served_document(doc_id: str) -> Callable[[AuditRecord], bool]:
    """Records of requests that were served a chunk of ``doc_id``."""
    return lambda record: any(chunk.doc_id == doc_id for chunk in record.chunks)


def of_request(request_id: str) -> Callable[[AuditRecord], bool]:
    """The record of one request (the server's id, or the caller's x-request-id)."""
    return lambda record: request_id in (record.request_id, record.client_request_id)


def of_user(user_id: str) -> Callable[[AuditRecord], bool]:
    return lambda record: record.user_id == user_id

"""``headwater erase``: erase documents everywhere Headwater keeps them, and
``headwater audit erasures``: the erasures recorded on the audit topic."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import UpstreamUnavailable
from core.kafka import KafkaProducer, read_to_end
from core.settings import Settings
from core.telemetry import traced_process
from ingest.models import ErasureRecord
from ingest.publish import DocumentEraser, Requester


def erase(
    doc_ids: Annotated[
        list[str], typer.Argument(help="Ids of the documents to erase.", metavar="DOC_ID")
    ],
    tenant: Annotated[str, typer.Option(help="Tenant the documents belong to.")],
    by: Annotated[
        str | None,
        typer.Option(help="Who asks, as the audit records it. Default: your login name."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="A ticket or request id to record with the erasure (no content)."),
    ] = None,
) -> None:
    """Erase documents: their chunks, their records on Kafka, their dead letters.

    For each DOC_ID: a tombstone on the documents topic (the ingest worker deletes the
    chunks when it reads it, seconds later, and purges the store's files of them), on
    every partition of the dead-letter topic, and an erasure record on the audit topic
    (who, when, tenant, doc_id; never any text). Kafka's compaction then removes every
    record of the document from its disks within the bound of docs/operating.md
    ("Erasure"): with the default settings, a day and a few minutes. Erasing twice is
    harmless; a newer version its connector publishes brings the document back.

    Needs Kafka at HEADWATER_KAFKA_BOOTSTRAP and the topics of HEADWATER_*_TOPIC.
    Exit code 1 if any erasure failed (run it again: it is idempotent).
    """
    settings = Settings()
    requester = Requester(user_id=by or getpass.getuser(), via="cli", reference=reference)
    console = Console(stderr=True)
    with traced_process(settings):
        failed = asyncio.run(_erase_all(settings, tenant, doc_ids, requester, console))
    if failed:
        console.print(f"{failed} of {len(doc_ids)} erasures failed")
        raise typer.Exit(1)


async def _erase_all(
    settings: Settings,
    tenant: str,
    doc_ids: list[str],
    requester: Requester,
    console: Console,
) -> int:
    producer = KafkaProducer(settings.kafka_bootstrap)
    eraser = DocumentEraser(
        producer,
        documents_topic=settings.documents_topic,
        dlq_topic=settings.dlq_topic,
        audit_topic=settings.audit_topic,
    )
    failed = 0
    try:
        for doc_id in doc_ids:
            try:
                record = await eraser.erase(tenant, doc_id, requester=requester)
            except UpstreamUnavailable as exc:
                failed += 1
                console.print(f"[red]failed[/] {escape(f'{tenant}/{doc_id}')}: {escape(str(exc))}")
                continue
            console.print(
                f"[green]erased[/] {escape(f'{tenant}/{doc_id}')}: erasure {record.erasure_id}, "
                f"tombstone at partition {record.documents_partition}, "
                f"offset {record.documents_offset}"
            )
    finally:
        await asyncio.to_thread(producer.close)
    return failed


def erasures(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """Every erasure recorded on the audit topic: when, who, which document, where its
    tombstone landed."""
    settings = Settings()
    table = Table("at", "tenant", "doc id", "by", "via", "reference", "erasure id", "tombstone")
    seen = 0
    for message in read_to_end(settings.kafka_bootstrap, topic=settings.audit_topic):
        try:
            record = ErasureRecord.model_validate_json(message.value or b"")
        except ValidationError:
            continue  # an answered request's record
        if tenant and record.tenant != tenant:
            continue
        seen += 1
        table.add_row(
            record.at,
            record.tenant,
            record.doc_id,
            record.requested_by,
            record.via,
            record.reference or "",
            record.erasure_id,
            f"{record.documents_partition}@{record.documents_offset}",
        )
    Console().print(table if seen else "no erasure recorded")

"""``headwater publish``: send files to Kafka as document events."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from acl.models import DocumentAcl
from core.errors import UpstreamUnavailable
from core.kafka import KafkaProducer, read_records
from core.settings import Settings
from core.telemetry import traced_process
from ingest.dead_letters import DeadLetter, dead_letters, replay
from ingest.extract import SUPPORTED, extract
from ingest.messages import SOURCE_KEY_HEADER
from ingest.models import DocumentEvent
from ingest.publish import DocumentPublisher


def _event_for(path: Path, *, tenant: str, acl: DocumentAcl, source: str) -> DocumentEvent:
    extracted = extract(path)
    return DocumentEvent(
        op="upsert",
        tenant=tenant,
        doc_id=f"{source}:{path.resolve().as_posix()}",
        # Versions must rise with every change: the file's modification time does.
        version=path.stat().st_mtime_ns // 1000,
        acl=acl,
        title=extracted.title,
        text=extracted.text,
        content_type=extracted.content_type,
        uri=path.resolve().as_uri(),
        source=source,
        metadata={"sha256": hashlib.sha256(extracted.text.encode()).hexdigest()},
    )


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given, and the supported files under each folder (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
            )
        else:
            files.append(path)
    return files


def publish(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files (.txt .md .html .pdf) or folders to publish.", exists=True, readable=True
        ),
    ],
    tenant: Annotated[str, typer.Option(help="Tenant the documents belong to.")],
    groups: Annotated[
        list[str] | None, typer.Option("--groups", "-g", help="Group allowed to read (repeatable).")
    ] = None,
    users: Annotated[
        list[str] | None, typer.Option("--users", "-u", help="User allowed to read (repeatable).")
    ] = None,
    public: Annotated[bool, typer.Option(help="Readable by everyone in the tenant.")] = False,
    source: Annotated[str, typer.Option(help="Source name, prefixed to each doc_id.")] = "file",
) -> None:
    """Publish PATHS to headwater.documents.v1 (idempotent producer, acks=all).

    Folders are walked for supported files. A file that cannot be read is reported and
    skipped; the others are still published (exit code 1 if any failed).
    Without --groups, --users or --public nobody can read them: ACLs deny by default.
    """
    files = _expand(paths)
    if not files:
        Console(stderr=True).print("[red]error:[/] no .txt, .md, .html or .pdf file found")
        raise typer.Exit(1)
    console = Console(stderr=True)
    acl = DocumentAcl(users=tuple(users or ()), groups=tuple(groups or ()), public=public)
    if not (acl.users or acl.groups or acl.public):
        console.print("[yellow]warning:[/] no --groups, --users or --public: nobody will see these")
    settings = Settings()
    producer = KafkaProducer(settings.kafka_bootstrap)
    publisher = DocumentPublisher(producer, settings.documents_topic)
    failed = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # Traced like every process of ours: each publish span's traceparent goes with its
    # message, so the worker's ingest trace continues it (HEADWATER_OTLP_ENDPOINT exports).
    with traced_process(settings), Progress(*columns, console=console) as progress:
        task = progress.add_task("publishing", total=len(files))
        for path in files:
            try:
                event = _event_for(path, tenant=tenant, acl=acl, source=source)
                delivered = publisher.publish(event)
                where = f"partition {delivered.partition}, offset {delivered.offset}"
                progress.console.print(f"[green]ok[/] {path} -> {event.doc_id} ({where})")
            except (OSError, UnicodeDecodeError, ValueError, UpstreamUnavailable) as exc:
                failed += 1
                progress.console.print(f"[red]failed[/] {path}: {exc}")
            progress.advance(task)
    producer.close()
    if failed:
        console.print(f"{failed} of {len(files)} files failed")
        raise typer.Exit(1)


dlq = typer.Typer(help="Inspect and replay the dead-letter topic.", no_args_is_help=True)


@dlq.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="Show at most this many messages.")] = 50,
) -> None:
    """List dead-lettered messages with the reason each was rejected."""
    settings = Settings()
    table = Table("partition", "offset", "key", "error type", "reason", "failed at")
    shown = 0
    for record in dead_letters(settings.kafka_bootstrap, topic=settings.dlq_topic):
        letter = DeadLetter.of(record)
        table.add_row(
            str(letter.partition),
            str(letter.offset),
            letter.source_key,
            letter.error_type,
            letter.reason[:200],
            letter.failed_at,
        )
        shown += 1
        if shown >= limit:
            break
    Console().print(table if shown else "the dead-letter topic is empty")


@dlq.command("replay")
def dlq_replay(
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed.")] = False,
) -> None:
    """Send dead-lettered messages back to the documents topic (after fixing the cause).

    Each message is replayed once: the 'headwater-dlq-replay' consumer group remembers
    how far it got. A message that fails again is dead-lettered again, with its reason.
    It goes back under its original key (x-source-key), a tombstone as a tombstone.
    """
    settings = Settings()
    console = Console(stderr=True)
    producer = KafkaProducer(settings.kafka_bootstrap)
    replayed = 0
    try:
        for record, commit_past in read_records(
            settings.kafka_bootstrap,
            topic=settings.dlq_topic,
            group="headwater-dlq-replay",
            commit=not dry_run,
        ):
            if record.value is None:  # a tombstone (an erasure's, the seal): no dead letter
                if not dry_run:
                    commit_past()
                continue
            original = record.headers.get(SOURCE_KEY_HEADER, record.key)
            if not dry_run:
                replay(producer, record, documents_topic=settings.documents_topic)
                commit_past()
            replayed += 1
            key = (original or b"").decode("utf-8", "replace")
            console.print(
                f"{'would replay' if dry_run else 'replayed'} {key} (offset {record.offset})"
            )
    finally:
        producer.close()
    console.print(f"{replayed} message(s) {'to replay' if dry_run else 'replayed'}")

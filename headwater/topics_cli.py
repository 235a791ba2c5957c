"""``headwater topics``: create the Kafka topics, and migrate the configs of existing ones."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.errors import UpstreamUnavailable
from core.kafka import KafkaProducer, ensure_topics, migrate_topics
from core.settings import Settings
from ingest.reseal import reseal_legacy_acl_events

topics = typer.Typer(invoke_without_command=True)
console = Console(stderr=True)


@topics.callback()
def create(ctx: typer.Context) -> None:
    """Create the missing Kafka topics; 'migrate' brings existing ones up to date.

    Without a command: create the topics of ARCHITECTURE.md that do not exist yet, with
    the configs of docs/operating.md ("Kafka topics"). Existing topics are left as they
    are; a topic whose configs differ is named in a warning: 'headwater topics migrate'
    changes it.
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        created = ensure_topics(Settings())
    except UpstreamUnavailable as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"created: {', '.join(created)}" if created else "all topics exist")


@topics.command("migrate")
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
) -> None:
    """Bring existing topics to the configs 'headwater topics' creates them with.

    Upgrading from a documents topic with cleanup.policy=delete, first every document
    whose last record is an ACL change keyed by the document (as before ACL keys) is
    re-sealed (its last upsert and that change are published again, the change under its
    ACL key; the worker skips both as stale), so that compaction cannot leave it without
    its text; then every differing config is set with incremental alter configs (other
    configs stay as they are): the documents topic becomes compacted, the dead-letter
    topic compact,delete, both with the segment and compaction bounds of
    docs/operating.md ("Erasure"). Idempotent. Needs Kafka reachable at
    HEADWATER_KAFKA_BOOTSTRAP; run it with the ingest workers up or down.
    """
    settings = Settings()
    try:
        planned = migrate_topics(settings, apply=False)
        if any(
            (change.topic, change.name) == (settings.documents_topic, "cleanup.policy")
            for change in planned
        ):
            _reseal(settings, dry_run=dry_run)
        changes = migrate_topics(settings, apply=not dry_run)
    except UpstreamUnavailable as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    if not changes:
        console.print("every existing topic has its documented config")
        return
    table = Table("topic", "config", "now", "wanted" if dry_run else "set to")
    for change in changes:
        table.add_row(change.topic, change.name, change.current or "(unset)", change.wanted)
    Console().print(table)
    if dry_run:
        console.print("dry run: nothing changed; run without --dry-run to apply")


def _reseal(settings: Settings, *, dry_run: bool) -> None:
    producer = None if dry_run else KafkaProducer(settings.kafka_bootstrap)
    try:
        report = reseal_legacy_acl_events(
            settings.kafka_bootstrap, topic=settings.documents_topic, producer=producer
        )
    finally:
        if producer is not None:
            producer.close()
    verb = "to re-seal" if dry_run else "re-sealed"
    console.print(f"{len(report.resealed)} document(s) {verb} (last record an ACL change)")
    for key in report.unrecoverable:
        console.print(
            f"[yellow]warning:[/] {key}: its last upsert has left the topic; compaction "
            "keeps only its ACL change: have its connector publish it again"
        )

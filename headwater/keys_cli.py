"""``headwater keys``: create, list and revoke API keys where the API reads them: the key
file (``HEADWATER_API_KEYS_SOURCE=file``, development) or the keys topic (``topic``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from acl.keys import KeyRegistry, KeyStore
from acl.models import Principal
from api.security import topic_key_store
from core.kafka import KafkaProducer, ensure_topics, read_to_end
from core.settings import Settings

keys = typer.Typer(
    help="Manage API keys in the key file or on the keys topic, as "
    "HEADWATER_API_KEYS_SOURCE says (only their SHA-256 is stored).",
    no_args_is_help=True,
)


@contextmanager
def open_registry(settings: Settings) -> Iterator[KeyRegistry]:
    """The registry the API processes read: the key file, or the keys topic as it is now."""
    if settings.api_keys_source == "file":
        yield KeyStore(settings.api_keys_file)
        return
    ensure_topics(settings)
    producer = KafkaProducer(settings.kafka_bootstrap)
    store = topic_key_store(settings, producer)
    try:
        for record in read_to_end(settings.kafka_bootstrap, topic=settings.keys_topic):
            store.apply(record.key, record.value)
        yield store
    finally:
        producer.close()


@keys.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Tenant of the key's principal.")],
    user: Annotated[str, typer.Option(help="User id of the key's principal.")],
    groups: Annotated[
        list[str] | None, typer.Option("--groups", "-g", help="Group (repeatable).")
    ] = None,
    department: Annotated[str | None, typer.Option(help="Department, for chargeback.")] = None,
    roles: Annotated[
        list[str] | None, typer.Option("--roles", help="Role, e.g. connector (repeatable).")
    ] = None,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    principal = Principal(
        tenant=tenant,
        user_id=user,
        groups=tuple(groups or ()),
        department=department,
        roles=tuple(roles or ()),
    )
    with open_registry(Settings()) as registry:
        key, entry = registry.create(principal)
    Console(stderr=True).print(f"created key {entry.key_id} for {user}; it is shown only now:")
    print(key)  # noqa: T201 - the one place the key is ever shown, on stdout for scripts


@keys.command("list")
def list_keys() -> None:
    """List keys by id, with their principals and state."""
    table = Table("id", "tenant", "user", "groups", "roles", "created", "revoked")
    with open_registry(Settings()) as registry:
        entries = registry.entries()
    for entry in entries:
        table.add_row(
            entry.key_id,
            entry.tenant,
            entry.user_id,
            ",".join(entry.groups),
            ",".join(entry.roles),
            entry.created_at or "",
            entry.revoked_at or "",
        )
    Console().print(table)


@keys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="Key id from 'headwater keys list'.")],
) -> None:
    """Revoke a key: every API process refuses it from its next use."""
    try:
        with open_registry(Settings()) as registry:
            entry = registry.revoke(key_id)
    except KeyError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(1) from exc
    Console(stderr=True).print(f"revoked {entry.key_id} ({entry.user_id})")

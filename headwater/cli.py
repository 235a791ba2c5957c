"""The ``headwater`` command line: every process and tool of the platform."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import httpx
import typer
from rich.console import Console

from core.settings import Settings
from core.telemetry import configure_logging, traced_process
from headwater.erase_cli import erase, erasures
from headwater.eval_cli import eval_app
from headwater.keys_cli import keys
from headwater.router_cli import router_app
from headwater.topics_cli import topics
from headwater.usage_cli import usage
from ingest.cli import dlq, publish

app = typer.Typer(
    help="Headwater: permission-safe answers from live documents.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(publish)
app.add_typer(dlq, name="dlq")
app.add_typer(keys, name="keys")
app.add_typer(router_app, name="router")
app.add_typer(eval_app, name="eval")
app.command()(usage)
app.add_typer(topics, name="topics")
app.command()(erase)
console = Console(stderr=True)
_NEEDS_SERVER = (
    "needs a Qdrant server (HEADWATER_QDRANT_URL); "
    "'headwater serve' runs API and worker together on the embedded store"
)


def _serve(*, run_ingest: bool) -> None:
    import uvicorn

    from headwater.processes import build_app

    settings = Settings()
    configure_logging(settings)
    uvicorn.run(
        build_app(settings, run_ingest=run_ingest),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        http="httptools",
        loop="uvloop",
        timeout_graceful_shutdown=30,
    )


@app.command()
def serve() -> None:
    """Run the API and the ingest worker in one process (the local, embedded-store mode)."""
    _serve(run_ingest=True)


@app.command("api")
def api_only() -> None:
    """Run the API alone (needs a Qdrant server: HEADWATER_QDRANT_URL)."""
    if not Settings().qdrant_url:
        console.print(f"[red]error:[/] the API alone {_NEEDS_SERVER}")
        raise typer.Exit(2)
    _serve(run_ingest=False)


@app.command()
def worker() -> None:
    """Run the ingest worker alone.

    With a Qdrant server (HEADWATER_QDRANT_URL) run as many as the topic has partitions.
    On the embedded store this process owns the data folder: no API can serve beside it
    (use 'headwater serve' for that); this mode suits ingest-only runs and benchmarks.
    """
    from headwater.processes import run_worker

    settings = Settings()
    configure_logging(settings)
    if not settings.qdrant_url:
        console.print("embedded store: this worker owns " + str(settings.store_path))
    from retrieval.binding import CollectionMismatch

    try:
        with traced_process(settings):
            asyncio.run(run_worker(settings))
    except CollectionMismatch as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("reindex")
def reindex_command(
    drop_old: Annotated[
        bool,
        typer.Option(
            "--drop-old",
            help="Delete the replaced collection right after the switch (no rollback then).",
        ),
    ] = False,
) -> None:
    """Rebuild the collection from the documents topic, then switch the alias (blue/green).

    The new collection uses this configuration's embedding model and chunking. The old
    one keeps serving while the new one is built: run this beside the running stack,
    with HEADWATER_EMBEDDING_* and HEADWATER_CHUNK_* set to the new configuration, then
    restart the API and workers with the same settings. Killed, it resumes where it
    stopped when run again. See docs/operating.md (Upgrades).
    """
    from headwater.reindex import reindex
    from retrieval.binding import CollectionMismatch

    settings = Settings()
    configure_logging(settings)
    try:
        with traced_process(settings):
            result = asyncio.run(reindex(settings, drop_old=drop_old, console=console))
    except CollectionMismatch as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"done in {result.seconds:.0f}s: restart the API and workers with this model's "
        f"settings; their ingest resumes from consumer group {result.consumer_group}"
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask.")],
    key: Annotated[str, typer.Option(envvar="HEADWATER_API_KEY", help="Your API key.")],
    url: Annotated[
        str, typer.Option(envvar="HEADWATER_URL", help="API base URL.")
    ] = "http://127.0.0.1:8000",
    model: Annotated[str, typer.Option(help="auto, small, large or a served model id.")] = "auto",
    top_k: Annotated[int, typer.Option(help="Chunks to retrieve.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Answer length budget.")] = 256,
) -> None:
    """Ask a question; the answer streams, then its citations are listed."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}],
        "headwater": {"retrieval": {"top_k": top_k}},
    }
    out = Console()
    extension: dict[str, object] = {}
    try:
        with httpx.stream(
            "POST",
            f"{url.rstrip('/')}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        ) as response:
            if response.status_code >= 400:
                error = json.loads(response.read()).get("error", {})
                console.print(f"[red]error {response.status_code}:[/] {error.get('message')}")
                raise typer.Exit(1)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    console.print(f"\n[red]error:[/] {chunk['error'].get('message')}")
                    raise typer.Exit(1)
                for choice in chunk.get("choices", []):
                    out.print(
                        choice.get("delta", {}).get("content") or "",
                        end="",
                        markup=False,
                        highlight=False,
                    )
                extension = chunk.get("headwater", extension)
    except httpx.ConnectError as exc:
        console.print(f"[red]error:[/] cannot reach {url}: is the stack up? (make up)")
        raise typer.Exit(1) from exc
    out.print()
    _print_citations(out, extension)


def _print_citations(out: Console, extension: dict[str, object]) -> None:
    citations = extension.get("citations") or []
    assert isinstance(citations, list)
    if not citations:
        out.print("[dim]no citations: nothing you may read matched[/]")
        return
    out.print("[bold]Citations[/]")
    for n, citation in enumerate(citations, start=1):
        name = citation.get("title") or citation["doc_id"]
        where = f"{citation['doc_id']}#{citation['chunk_no']}, score {citation['score']}"
        out.print(f"  [{n}] {name} ({where})", markup=False)


audit = typer.Typer(help="Read the audit trail (headwater.audit.v1).", no_args_is_help=True)
app.add_typer(audit, name="audit")
audit.command("erasures")(erasures)


@audit.command("who-saw")
def who_saw(
    doc_id: Annotated[str, typer.Argument(help="The document id.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """Every answered request that was served a chunk of DOC_ID: when, who, which chunks."""
    from pydantic import ValidationError
    from rich.table import Table

    from api.audit import AuditRecord
    from core.kafka import read_to_end

    settings = Settings()
    table = Table("at", "tenant", "user", "department", "endpoint", "request id", "chunks")
    seen = 0
    for message in read_to_end(settings.kafka_bootstrap, topic=settings.audit_topic):
        try:
            record = AuditRecord.model_validate_json(message.value or b"{}")
        except ValidationError:
            continue  # an erasure's record (headwater audit erasures)
        chunks = [c for c in record.chunks if c.doc_id == doc_id]
        if not chunks or (tenant and record.tenant != tenant):
            continue
        seen += 1
        served = ", ".join(f"#{c.chunk_no} (v{c.version})" for c in chunks)
        table.add_row(
            record.at,
            record.tenant,
            record.user_id,
            record.department or "",
            record.endpoint,
            record.request_id,
            served,
        )
    Console().print(table if seen else f"no answered request was served {doc_id}")


@app.command()
def up(
    api_port: Annotated[int, typer.Option(help="Port of the Headwater API.")] = 8000,
    kafka_port: Annotated[int, typer.Option(help="Port of the Kafka broker.")] = 9092,
    llm_port: Annotated[int, typer.Option(help="Port of the vLLM server.")] = 8001,
    scale: Annotated[
        bool,
        typer.Option(
            "--scale",
            help="The scale-out topology: a 3-node Qdrant cluster (ports 6333/6343/6353; "
            "3 shards, 2 copies each), workers on 8010/8011 and API replicas on 8000/8002 "
            "(docs/operating.md, Scale-out). Needs ../shared/bin/qdrant or "
            "HEADWATER_QDRANT_BIN.",
        ),
    ] = False,
) -> None:
    """Start Kafka, the vLLM server and Headwater in the background; wait until healthy.

    Needs 'make setup' first (virtualenvs, Kafka jars, the converted model).
    """
    from deploy.process import StackError
    from deploy.stack import up as stack_up

    try:
        urls = stack_up(
            api_port=api_port,
            kafka_port=kafka_port,
            llm_port=llm_port,
            scale=scale,
            say=console.print,
        )
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    for name, url in urls.items():
        console.print(f"{name:>6}: {url}")
    console.print("stop with: make down")


@app.command()
def down() -> None:
    """Stop every process 'headwater up' started."""
    from deploy.stack import down as stack_down

    stack_down(say=console.print)


@app.command()
def status() -> None:
    """Which parts of the local stack are running (exit 3 if any is not)."""
    from deploy.stack import status as stack_status

    states = stack_status()
    for name, alive in states.items():
        console.print(f"{name:>9}: {'running' if alive else 'stopped'}")
    if not all(states.values()):
        raise typer.Exit(3)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The ``headwater`` command line."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import httpx
import typer
from rich.console import Console

from core.settings import Settings
from core.telemetry import configure_logging
from ingest.cli import publish

app = typer.Typer(
    help="Headwater: permission-safe answers from live documents.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(publish)
console = Console(stderr=True)
_NEEDS_SERVER = (
    "needs a Qdrant server (HEADWATER_QDRANT_URL); "
    "'headwater serve' runs API and worker together on the embedded store"
)


def _serve(*, run_ingest: bool) -> None:
    import uvicorn

    from api.app import create_app

    settings = Settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings, run_ingest=run_ingest),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
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
    """Run the ingest worker alone (needs a Qdrant server: HEADWATER_QDRANT_URL)."""
    from ingest.runtime import run_worker

    settings = Settings()
    if not settings.qdrant_url:
        console.print(f"[red]error:[/] the worker alone {_NEEDS_SERVER}")
        raise typer.Exit(2)
    configure_logging(settings)
    asyncio.run(run_worker(settings))


@app.command()
def topics() -> None:
    """Create the Kafka topics of ARCHITECTURE.md that do not exist yet."""
    from ingest.kafka import ensure_topics

    created = ensure_topics(Settings())
    console.print(f"created: {', '.join(created)}" if created else "all topics exist")


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


def main() -> None:
    app()

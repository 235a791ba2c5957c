"""A real Qdrant server for the tests: ``../shared/bin/qdrant`` (or ``HEADWATER_QDRANT_BIN``),
one node on loopback with storage of its own, started by deploy/split.py's launcher.

The session fixture ``qdrant_server`` (tests/conftest.py) starts it once (:func:`qdrant_node`)
and skips, saying why, only where the binary is absent; tests share
it and keep apart by names: each takes a fresh alias (:meth:`QdrantTestServer.fresh_alias`),
so its collections (``{alias}__…``, :func:`retrieval.schema.versioned_collection`) are its
own, and drops them when done (:meth:`QdrantTestServer.drop`).
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from deploy.process import ManagedProcess, free_port
from deploy.split import QDRANT_BIN_ENV, qdrant_binary, qdrant_process


def missing_binary_reason() -> str | None:
    """Why the server tests cannot run here (no executable binary), or None."""
    binary = qdrant_binary()
    if os.access(binary, os.X_OK):
        return None
    return (
        f"no Qdrant server binary at {binary}: the server-path tests need one "
        f"(../shared/bin/QDRANT.md; or set {QDRANT_BIN_ENV})"
    )


@dataclass(frozen=True)
class QdrantTestServer:
    """A running server: its URL, fresh names on it, and its own view of a collection
    (plain REST, not through the adapter under test)."""

    url: str

    def fresh_alias(self, stem: str = "chunks") -> str:
        return f"{stem}_{uuid.uuid4().hex[:10]}"

    def client(self) -> QdrantClient:
        # The team's server (1.18) is two minor versions behind qdrant-client (1.20): the
        # client's check would warn from a thread of its own, which no test can catch.
        return QdrantClient(url=self.url, check_compatibility=False)

    def get(self, path: str) -> Any:
        """``GET {url}{path}``'s ``result``."""
        return self._get(path)["result"]

    def version(self) -> str:
        """The server's version, as ``GET /`` says it."""
        return str(self._get("/")["version"])

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def collections(self) -> set[str]:
        return {c["name"] for c in self.get("/collections")["collections"]}

    def aliases(self) -> dict[str, str]:
        """Every alias on the server and the collection it names."""
        return {a["alias_name"]: a["collection_name"] for a in self.get("/aliases")["aliases"]}

    def drop(self, *aliases: str) -> None:
        """Delete these aliases and every collection named after them."""
        client = self.client()
        try:
            for alias in aliases:
                if alias in self.aliases():
                    delete = models.DeleteAlias(alias_name=alias)
                    client.update_collection_aliases(
                        change_aliases_operations=[models.DeleteAliasOperation(delete_alias=delete)]
                    )
                for name in self.collections():
                    if name.startswith(f"{alias}__"):
                        client.delete_collection(name)
        finally:
            client.close()


def qdrant_node(root: Path) -> tuple[ManagedProcess, QdrantTestServer]:
    """The server process (not started) with its storage and ``qdrant.log`` under ``root``,
    on free ports, and how tests reach it once it is ready."""
    http_port = free_port()
    process = qdrant_process(
        binary=qdrant_binary(),
        http_port=http_port,
        grpc_port=free_port(),
        data_dir=root / "data",
        log_path=root / "qdrant.log",
    )
    return process, QdrantTestServer(f"http://127.0.0.1:{http_port}")

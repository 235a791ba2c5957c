"""No code path reaches the vector store's search without the permission filter.

Structure does most of it (``VectorStore.search`` takes a ``PermissionFilter``, which
only a principal can build); this scan guards the rest: engine query calls live only
in the two adapters, inside ``search`` (with the permission filter applied) or in the
maintenance reads, and every other ``.search(`` call (in modules that can reach a store)
passes ``permission=``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("acl", "api", "core", "inference", "ingest", "retrieval", "bench", "deploy")
ADAPTERS = {"retrieval/qdrant.py", "retrieval/qdrant_edge.py"}
ENGINE_READS = {"query", "query_points", "query_batch", "search_batch", "recommend", "discover"}
MAINTENANCE = {
    "chunks": {"scroll"},
    "_chunk_page": {"scroll"},  # one page of chunks() on a server, retried on another node
    "count": {"count"},
    "document_states": {"retrieve"},
    "binding": {"retrieve"},  # the collection binding record (retrieval.binding)
    "scroll_missing": {"scroll"},  # the access-keys backfill (retrieval.store)
}


def _sources() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(REPO).as_posix(), ast.parse(path.read_text()))
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    ]


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call, str | None]]:
    """(method name, call, enclosing function) for every attribute call."""
    found: list[tuple[str, ast.Call, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                found.append((child.func.attr, child, function))
            visit(child, name)

    visit(tree, None)
    return found


def test_engine_queries_happen_only_in_the_adapters_search_methods() -> None:
    offending = []
    for path, tree in _sources():
        for method, call, function in _calls(tree):
            if method in ENGINE_READS and not (path in ADAPTERS and function == "search"):
                offending.append(f"{path}:{call.lineno} {method}() in {function}")
    assert not offending, offending


def test_adapter_searches_apply_the_permission_filter() -> None:
    for path, tree in _sources():
        if path not in ADAPTERS:
            continue
        searches = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == "search"
        ]
        assert len(searches) == 1, path
        filters = [
            call
            for call in ast.walk(searches[0])
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "permission_filter"
        ]
        assert filters, f"{path}: search() does not build the permission filter"


def _reaches_the_store(tree: ast.Module) -> bool:
    """Whether a module imports retrieval or the API's services (the only ways to get a
    store or a retriever); other modules' ``.search(`` calls are regex searches."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(n.split(".")[0] == "retrieval" or n in ("api.services", "api.deps") for n in names):
            return True
    return False


def test_every_store_search_call_passes_a_permission() -> None:
    offending = []
    for path, tree in _sources():
        if not _reaches_the_store(tree):
            continue
        for method, call, function in _calls(tree):
            if method == "search" and not any(k.arg == "permission" for k in call.keywords):
                offending.append(f"{path}:{call.lineno} in {function}")
    assert not offending, offending


def test_maintenance_reads_stay_in_their_methods() -> None:
    reads = {read for allowed in MAINTENANCE.values() for read in allowed}
    offending = []
    for path, tree in _sources():
        if path not in ADAPTERS:
            continue
        for method, call, function in _calls(tree):
            if method in reads - {"count"} and method not in MAINTENANCE.get(function or "", set()):
                offending.append(f"{path}:{call.lineno} {method}() in {function}")
    assert not offending, offending

"""The package table of docs/architecture.md, enforced: what each package never imports,
and which one module may import each external client.

Every ``import`` and ``from ... import`` statement counts, at module level or inside a
function (a lazy import is still a dependency). ``TYPE_CHECKING`` blocks count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "acl", "ingest", "retrieval", "inference", "api", "headwater", "deploy")
OURS = (*PRODUCT, "bench", "tests")

# package -> the packages (ours or external) it never imports
NEVER: dict[str, tuple[str, ...]] = {
    "core": tuple(p for p in OURS if p != "core"),
    "acl": (
        "qdrant_client",
        "qdrant_edge",
        "fastapi",
        "starlette",
        "faust",
        "confluent_kafka",
        "ingest",
        "retrieval",
        "inference",
        "api",
        "headwater",
        "deploy",
        "bench",
    ),
    "ingest": ("api", "inference", "headwater", "deploy", "bench"),
    "retrieval": ("ingest", "inference", "api", "headwater", "deploy", "bench"),
    "inference": ("acl", "retrieval", "ingest", "api", "headwater", "deploy", "bench"),
    "api": ("deploy", "headwater", "bench"),
    "deploy": tuple(p for p in OURS if p not in ("deploy", "core")),
    "headwater": ("bench", "tests"),
}
# api may use these modules of ingest, and nothing else of it
API_MAY_USE_OF_INGEST = ("ingest.models", "ingest.publish", "ingest.dead_letters")
# an external client and the only place (a package or a module) that may import it
ONLY_IN: dict[str, tuple[str, ...]] = {
    "confluent_kafka": ("core.kafka",),
    "qdrant_client": ("retrieval.qdrant", "retrieval.qdrant_query"),
    "qdrant_edge": ("retrieval.qdrant_edge", "retrieval.qdrant_edge_query", "retrieval.sparse"),
    "faust": ("ingest",),
    "fastapi": ("api",),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "llm" in path.relative_to(ROOT).parts[1:2]:
                continue  # deploy/llm/*: scripts run in the LLM server's own virtualenv
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield dotted.removesuffix(".__init__"), path


def imports_of(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``a.b`` for ``from a.b import c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> list[str]:
    found: list[str] = []
    for module, path in _modules():
        package = module.split(".")[0]
        for name in sorted(imports_of(path)):
            top = name.split(".")[0]
            if top in NEVER.get(package, ()):
                found.append(f"{module} imports {name} ({package} never imports {top})")
            if (
                package == "api"
                and top == "ingest"
                and not any(_within(name, ok) for ok in API_MAY_USE_OF_INGEST)
            ):
                found.append(f"{module} imports {name} (api uses only {API_MAY_USE_OF_INGEST})")
            allowed = ONLY_IN.get(top)
            if allowed and not any(_within(module, owner) for owner in allowed):
                found.append(f"{module} imports {name} (only {', '.join(allowed)} may)")
    return found


def test_no_package_imports_what_the_table_forbids() -> None:
    assert violations() == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a lazy forbidden import inside a function is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from api.chat.service import Answerer\n    import faust\n")
    assert {"api.chat.service", "api.chat.service.Answerer", "faust"} <= imports_of(module)


@pytest.mark.parametrize("package", PRODUCT)
def test_every_product_package_is_in_the_table(package: str) -> None:
    assert package in NEVER
    assert (ROOT / package / "__init__.py").exists()


def test_no_payload_key_is_spelled_outside_retrieval() -> None:
    """The stored point's payload is read and written by retrieval/ alone (its typed
    record): no other package indexes a payload by a key string."""
    offenders = []
    for module, path in _modules():
        if module.startswith("retrieval"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "payload"
                and not module.startswith("retrieval")
            ):
                offenders.append(f"{module}:{node.lineno}")
    assert offenders == []

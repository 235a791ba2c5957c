"""The deployment files against the code: settings, metrics, CLI commands, API routes.

A setting, metric or command renamed in the code fails here instead of in production.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import pytest
import typer
from prometheus_client.metrics import MetricWrapperBase
from pydantic import TypeAdapter

import api.routers
import core.metrics
from core.settings import Settings
from headwater.cli import app as cli_app
from tests.deploy.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    K8S,
    PROMETHEUS,
    REPO,
    app_services,
    dashboard_queries,
    headwater_containers,
    k8s_objects,
    load_yaml,
    setting_env_names,
)

_ENV_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")
_HEADWATER_NAME = re.compile(r"\bHEADWATER_[A-Z0-9_]+\b")


def _env_example() -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (m := _ENV_LINE.match(line))
    }


# --- settings --------------------------------------------------------------------------


def test_env_example_lists_every_setting_with_its_default() -> None:
    listed = _env_example()
    for name, field in Settings.model_fields.items():
        env = f"HEADWATER_{name.upper()}"
        assert env in listed, f"{env} missing from .env.example"
        value = listed[env]
        # An empty value is "unset" (env_ignore_empty); otherwise the value must parse,
        # as pydantic-settings would parse it, to the field's default.
        # Complex fields (dicts) are JSON, as pydantic-settings reads them.
        adapter = TypeAdapter(field.annotation)
        if value == "":
            parsed = None
        elif value.startswith(("{", "[")):
            parsed = adapter.validate_json(value)
        else:
            parsed = adapter.validate_python(value)
        assert parsed == field.get_default(call_default_factory=True), env
    unknown = {name for name in listed if name.startswith("HEADWATER_")} - setting_env_names()
    assert not unknown, f".env.example lists settings that do not exist: {unknown}"


def test_env_example_gives_each_setting_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for n, line in enumerate(lines):
        if (m := _ENV_LINE.match(line)) and m.group(1).startswith("HEADWATER_"):
            above = lines[n - 1]
            assert above.startswith("# ") and not _ENV_LINE.match(above), m.group(1)


def test_docs_mention_every_setting() -> None:
    docs = (REPO / "README.md").read_text() + (REPO / "docs" / "operating.md").read_text()
    missing = sorted(name for name in setting_env_names() if name not in docs)
    assert not missing, f"settings documented nowhere: {missing}"


def test_compose_and_kubernetes_use_only_real_settings() -> None:
    real = setting_env_names()
    for path in [COMPOSE, *sorted(K8S.rglob("*.yaml"))]:
        used = set(_HEADWATER_NAME.findall(path.read_text()))
        assert used <= real, f"{path.relative_to(REPO)}: not settings: {used - real}"
    for name, service in app_services().items():
        assert set(service["environment"]) <= real, name
    for name, container in headwater_containers():
        assert {env["name"] for env in container.get("env", [])} <= real, name
    for _, obj in k8s_objects():
        if obj["kind"] == "ConfigMap" or obj["metadata"]["name"] == "headwater-qdrant":
            keys = set(obj.get("data") or obj.get("stringData") or {})
            assert keys <= real, obj["metadata"]["name"]


def test_compose_variables_are_settings_or_listed_in_env_example() -> None:
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert variables <= set(_env_example()), variables - set(_env_example())


# --- CLI commands ----------------------------------------------------------------------


def _cli_commands() -> set[str]:
    group: Any = typer.main.get_command(cli_app)
    return set(group.commands)


def test_every_headwater_command_in_the_deploy_files_exists() -> None:
    commands = _cli_commands()
    assert {"api", "worker", "topics"} <= commands
    for name, service in app_services().items():
        assert service["command"][0] in commands, f"compose {name}: {service['command']}"
    for name, container in headwater_containers():
        args = container.get("command", []) + container.get("args", [])
        args = args[1:] if args[:1] == ["headwater"] else args
        assert args[0] in commands, f"k8s {name}: {args}"
    cmd = re.search(r'^CMD \["(\w+)"\]$', DOCKERFILE.read_text(), re.MULTILINE)
    assert cmd and cmd.group(1) in commands


# --- metrics ---------------------------------------------------------------------------

# Metrics of other programs that the dashboards and alerts use.
_EXTERNAL_METRICS = {
    "up",  # Prometheus, per target
    "vllm:num_requests_waiting",  # vLLM's server
}
_TARGET_LABELS = {"job", "instance"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _exported_series() -> dict[str, set[str]]:
    """Series name -> label names, for every metric core/metrics.py registers."""
    series: dict[str, set[str]] = {}
    for metric in vars(core.metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        (family,) = metric.describe()
        labels = set(metric._labelnames)
        for suffix in _SUFFIXES[family.type]:
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def _queries() -> list[tuple[str, str]]:
    alerts = load_yaml(PROMETHEUS / "alerts.yml")
    rules = [
        (f"alert {rule['alert']}", rule["expr"])
        for group in alerts["groups"]
        for rule in group["rules"]
    ]
    return rules + dashboard_queries()


def _static_target_labels() -> set[str]:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    return {
        label
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for label in group.get("labels", {})
    }


def test_the_contract_metrics_are_exported() -> None:
    series = _exported_series()
    for name in (
        "headwater_http_request_duration_seconds_bucket",
        "headwater_tokens_total",
        "headwater_route_decisions_total",
        "headwater_ingest_events_total",
        "headwater_ingest_chunks_total",
        "headwater_ingest_dlq_total",
        "headwater_ingest_consumer_lag",
        "headwater_ingest_freshness_seconds_bucket",
    ):
        assert name in series, name


@pytest.mark.parametrize(("where", "expr"), [pytest.param(w, e, id=w) for w, e in _queries()])
def test_queries_use_exported_metrics_and_their_labels(where: str, expr: str) -> None:
    series = _exported_series()
    target_labels = _TARGET_LABELS | _static_target_labels()
    in_query: set[str] = set()
    for name, selector in re.findall(r"\b(headwater_[a-z0-9_]+)\s*(\{[^}]*\})?", expr):
        assert name in series, f"{where}: {name} is not exported by core/metrics.py"
        in_query |= series[name]
        matched = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", selector))
        assert matched <= series[name] | target_labels, f"{where}: {name}{selector}"
    for name in re.findall(r"\b(?:up|vllm:[a-z_:]+)\b(?=\s*[{)\[])", expr):
        assert name in _EXTERNAL_METRICS, f"{where}: {name}"
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= in_query | target_labels | {"le"}, f"{where}: by ({grouping})"


def _api_routes() -> set[str]:
    """Path templates of every router in api/routers and api/chat (the `route` label's
    values)."""
    modules = [f"api.routers.{m.name}" for m in pkgutil.iter_modules(api.routers.__path__)]
    paths = set()
    for name in [*modules, "api.chat.router"]:
        router = getattr(importlib.import_module(name), "router", None)
        paths |= {route.path for route in getattr(router, "routes", [])}
    return paths


def test_route_label_values_are_api_routes() -> None:
    routes = _api_routes()
    assert {"/v1/search", "/v1/chat/completions"} <= routes
    for where, expr in _queries():
        for values in re.findall(r'\broute\s*=~?\s*"([^"]*)"', expr):
            for value in values.split("|"):
                assert value in routes, f"{where}: route {value!r} is no API route"

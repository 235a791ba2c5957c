"""Prometheus, alert rules, Grafana and the OpenTelemetry Collector configuration.

promtool (Debian's `prometheus` package) checks the Prometheus config, the rules, the
rules' unit tests and the PromQL of every dashboard panel. The collector has no offline
validator on a package registry, so its wiring is checked here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.deploy_files import (
    COLLECTOR,
    GRAFANA,
    PROMETHEUS,
    compose,
    dashboard_queries,
    dashboards,
    load_yaml,
    panels,
    tool,
)

# Grafana's built-in variables, replaced by a literal before promtool parses a query.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> None:
    result = subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    _promtool("check", "config", "prometheus.yml")


def test_alert_rules_are_valid() -> None:
    _promtool("check", "rules", "alerts.yml")


def test_alert_rules_fire_as_their_unit_tests_expect() -> None:
    _promtool("test", "rules", "alerts.test.yml")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for n, (_, expr) in enumerate(dashboard_queries()):
        for variable, literal in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, literal)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    assert rules
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    _promtool("check", "rules", str(path), cwd=tmp_path)


def test_dashboards_are_well_formed_and_use_provisioned_datasources() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "headwater.yaml")
    uids = {source["uid"] for source in datasources["datasources"]}
    seen_uids = set()
    for name, dashboard in dashboards().items():
        assert dashboard["uid"] not in seen_uids, name
        seen_uids.add(dashboard["uid"])
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels(dashboard):
            for holder in [panel, *panel.get("targets", [])]:
                assert holder["datasource"]["uid"] in uids, f"{name} panel {panel['id']}"


def test_grafana_mounts_the_provisioning_and_its_home_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in grafana["volumes"])
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "headwater.yaml")
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert mounts[dashboards_dir] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(dashboards_dir)
    assert Path(home).name in dashboards()


def test_collector_pipelines_are_wired() -> None:
    config = load_yaml(COLLECTOR)
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["receivers"] and pipeline["exporters"], name
        # memory_limiter first and batch last is the collector's documented order.
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name
        for kind, names in used.items():
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{name} uses undefined {kind[:-1]} {component}"
                names.add(component)
    for kind, names in used.items():
        assert set(config[kind]) == names, f"{kind} defined but unused: {set(config[kind]) - names}"
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    assert {"traces", "metrics"} <= set(config["service"]["pipelines"])


def test_collector_sends_traces_to_jaeger_and_listens_where_the_apps_export() -> None:
    config = load_yaml(COLLECTOR)
    services = compose()["services"]
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name in ("api", "ingest"):
        endpoint = services[name]["environment"]["HEADWATER_OTLP_ENDPOINT"]
        assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}"
    (exporter,) = config["service"]["pipelines"]["traces"]["exporters"]
    host = config["exporters"][exporter]["endpoint"].split(":")[0]
    assert host == "jaeger" and host in services
    command = services["otel-collector"]["command"]
    assert command == ["--config=/etc/otelcol/collector.yaml"]
    assert (
        "./deploy/otel/collector.yaml:/etc/otelcol/collector.yaml:ro"
        in services["otel-collector"]["volumes"]
    )


def test_prometheus_scrapes_services_that_exist() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    services = compose()["services"]
    names = set(services) | {
        alias
        for service in services.values()
        for network in (service.get("networks") or {}).values()
        for alias in (network or {}).get("aliases", [])
    }
    for job in config["scrape_configs"]:
        hosts = [
            target.split(":")[0]
            for group in job.get("static_configs", [])
            for target in group["targets"]
        ] + [name for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        for host in hosts:
            assert host == "localhost" or host in names, f"{job['job_name']}: {host}"
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"headwater-api", "headwater-ingest", "vllm", "qdrant", "otel-collector"} <= jobs

"""compose.yaml against the Compose Specification's JSON schema, and its internal references.

The schema is the compose-spec one that check-jsonschema vendors (its builtin
``vendor.compose-spec``), so nothing is fetched at test time.
"""

from __future__ import annotations

import copy
import json
import subprocess
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from tests.deploy.deploy_files import COMPOSE, app_services, compose, tool

# The vendored schema names its dialect by a URL jsonschema does not know verbatim
# ("https://json-schema.org/draft-07/schema"), so the class is picked from it here.
_DIALECTS = {
    "draft-07": jsonschema.Draft7Validator,
    "draft/2020-12": jsonschema.Draft202012Validator,
}


def _compose_schema_errors(document: dict[str, Any]) -> list[str]:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_class = next(cls for key, cls in _DIALECTS.items() if key in schema["$schema"])
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_specification() -> None:
    assert _compose_schema_errors(compose()) == []


def test_check_jsonschema_cli_accepts_the_compose_file() -> None:
    """The command an operator runs: check-jsonschema with its vendored compose-spec schema."""
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["api"]["healthchek"] = broken["services"]["api"].pop("healthcheck")
    errors = _compose_schema_errors(broken)
    assert any("healthchek" in error for error in errors), errors


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends = service.get("depends_on") or {}
    return (
        {name: {"condition": "service_started"} for name in depends}
        if isinstance(depends, list)
        else depends
    )


def test_dependencies_exist_and_health_conditions_have_healthchecks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, how in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if how["condition"] == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_named_volumes_and_secrets_are_declared() -> None:
    document = compose()
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in document["volumes"], f"{name}: undeclared volume {source}"
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in document["secrets"], f"{name}: undeclared secret {source}"


def test_infrastructure_has_healthchecks() -> None:
    services = compose()["services"]
    for name in (
        "kafka",
        "qdrant",
        "redis",
        "api",
        "prometheus",
        "grafana",
        "llm-small",
        "llm-large",
    ):
        assert services[name]["healthcheck"]["test"], name
    for name in ("llm-small-cpu", "llm-large-cpu"):
        assert services[name]["healthcheck"]["test"], name


def test_api_runs_apart_from_the_worker_on_a_qdrant_server() -> None:
    services = app_services()
    assert services["api"]["command"] == ["api"]
    assert services["ingest"]["command"] == ["worker"]
    assert services["topics-init"]["command"] == ["topics"]
    assert services["api"]["deploy"]["replicas"] == 2
    for name in ("api", "ingest"):
        assert services[name]["environment"]["HEADWATER_QDRANT_URL"] == "http://qdrant:6333"
        waits_for = _depends_on(services[name])
        assert waits_for["topics-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("tier", ["small", "large"])
def test_gpu_and_cpu_profiles_serve_each_tier_under_one_name(tier: str) -> None:
    services = compose()["services"]
    gpu, cpu = services[f"llm-{tier}"], services[f"llm-{tier}-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert "models:/models" in gpu["volumes"]
    served = next(arg for arg in gpu["command"] if arg.startswith("--served-model-name="))
    served_name = served.split("=", 1)[1]
    # The CPU build (serve.sh MODEL_DIR SERVED_NAME PORT) serves the same name, reachable
    # under the GPU service's name, so the API's settings hold for both profiles.
    assert cpu["command"][1] == served_name
    assert cpu["networks"]["default"]["aliases"] == [f"llm-{tier}"]
    assert cpu["build"]["target"] == "llm-cpu"
    api_env = services["api"]["environment"]
    assert api_env[f"HEADWATER_LLM_{tier.upper()}_MODEL"] == served_name
    assert api_env[f"HEADWATER_LLM_{tier.upper()}_URL"] == f"http://llm-{tier}:8000/v1"
    # The API waits for whichever of the two the active profile starts.
    depends = _depends_on(services["api"])
    for name in (f"llm-{tier}", f"llm-{tier}-cpu"):
        assert depends[name] == {"condition": "service_healthy", "required": False}


def test_the_api_reaches_redis_with_the_local_config() -> None:
    """The shared store of budgets and the answer cache: the API waits for it and is
    given its URL; it runs deploy/redis/redis.conf, listening on the compose network."""
    services = compose()["services"]
    redis = services["redis"]
    assert "./deploy/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert redis["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert "ports" not in redis  # only the containers reach it
    api = services["api"]
    assert api["environment"]["HEADWATER_REDIS_URL"] == "redis://redis:6379/0"
    assert _depends_on(api)["redis"] == {"condition": "service_healthy"}

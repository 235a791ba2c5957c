"""The Dockerfile: hadolint (which also parses it as BuildKit would), and the contract of
its stages with compose.yaml and Kubernetes."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.deploy_files import DOCKERFILE, compose, tool


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> (INSTRUCTION, arguments) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            current = stages.setdefault(arguments.split()[-1], [])
        current.append((instruction.upper(), arguments.strip()))
    return stages


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_app_stage_is_the_default_target_and_runs_headwater_as_non_root() -> None:
    stages = _stages()
    assert list(stages)[-1] == "app"
    app = dict(stages["app"])  # the last of each instruction wins, as in Docker
    assert app["FROM"].startswith("${PYTHON_IMAGE}")
    assert re.fullmatch(r"\d+", app["USER"]) and int(app["USER"]) != 0
    assert json.loads(app["ENTRYPOINT"]) == ["headwater"]
    assert json.loads(app["CMD"]) == ["api"]
    assert "/healthz" in app["HEALTHCHECK"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()


def test_compose_builds_only_stages_that_exist() -> None:
    stages = _stages()
    targets = {
        service["build"]["target"]
        for service in compose()["services"].values()
        if "build" in service
    }
    assert targets == {"app", "llm-cpu"}
    assert targets <= stages.keys()


def test_llm_cpu_stage_is_built_by_the_projects_setup_script() -> None:
    llm = _stages()["llm-cpu"]
    runs = " ".join(arguments for instruction, arguments in llm if instruction == "RUN")
    assert "deploy/llm/setup.sh" in runs
    entrypoint = json.loads(dict(llm)["ENTRYPOINT"])
    assert entrypoint[0].endswith("deploy/llm/serve.sh")

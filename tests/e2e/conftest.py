"""The e2e stack: a real broker and vLLM server (session fixtures in tests/conftest.py)
and one Headwater app (API + ingest worker, embedded store) for the whole e2e run."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from deploy.stack import LLM_MODEL_NAME, StackPaths
from headwater.processes import build_app

HR_KEY, ENG_KEY, CONNECTOR_KEY = "e2e-hr-key", "e2e-eng-key", "e2e-connector-key"
DIRECTORY_KEY = "e2e-directory-key"
ADMIN_KEY = "e2e-admin-key"
KEYS = [
    {"key": HR_KEY, "tenant": "acme", "user_id": "hannah@acme.com", "groups": ["hr"]},
    {"key": ENG_KEY, "tenant": "acme", "user_id": "evan@acme.com", "groups": ["eng"]},
    {"key": CONNECTOR_KEY, "tenant": "acme", "user_id": "wiki-connector", "roles": ["connector"]},
    {"key": DIRECTORY_KEY, "tenant": "acme", "user_id": "dana@acme.com", "groups": ["eng"]},
    {"key": ADMIN_KEY, "tenant": "acme", "user_id": "root@acme.com", "roles": ["admin"]},
]


@pytest.fixture(scope="session")
def settings(
    kafka_bootstrap: str, llm_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    root = tmp_path_factory.mktemp("e2e")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"keys": KEYS}))
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        llm_small_url=llm_url,
        llm_small_tokenizer=StackPaths.default().models_dir / LLM_MODEL_NAME,
        data_dir=root / "data",
        api_keys_file=keys,
        consumer_group=f"e2e-{uuid.uuid4().hex[:8]}",
    )


# Package scope: the app (its ingest worker's aiokafka consumer included) stops once the
# e2e tests are done. Left running for the session, it kept fetching, and aiokafka's
# fetcher shuffles with the global ``random`` on every fetch; when that lands while a
# later Hypothesis test draws an example, Hypothesis reports a strategy using ``random``
# (an error under this suite's warning filter: a CI run failed so, in test_firewall).
@pytest.fixture(scope="package")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings)) as test_client:
        yield test_client


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def search(client: TestClient, key: str, query: str) -> list[dict[str, Any]]:
    response = client.post("/v1/search", json={"query": query, "top_k": 8}, headers=auth(key))
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` behind a real uvicorn HTTP server on a free port, in a background thread
    (its spans land in this process's in-memory exporter); yields its ``/v1`` URL."""
    import threading

    import uvicorn

    from deploy.process import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

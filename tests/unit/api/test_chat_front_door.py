"""One suite, two paths: ``POST /v1/chat/completions`` through the fast front door
(``api.chat.front_door``) and through the FastAPI route it stands in for must answer the
same: status, error shape, headers and spans. Every case runs on both and the two
observations are compared, so the bypass cannot drift from the route.

The app is the real one (``api.app.create_app``: routers, middleware, error handlers,
the front door) over fake services of our own (an answerer that needs no model server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from acl.directory import GroupDirectory
from acl.keys import ApiKeyAuthenticator
from acl.models import Principal
from api.app import create_app
from api.audit import AuditRecord
from api.chat.prepared import PreparedAnswer
from api.chat.protocol import ChatCompletionRequest
from api.ratelimit import RateLimiter
from core.errors import NotFound, UpstreamUnavailable
from core.settings import Settings
from inference.router import Route

KEY, LIMITED_KEY = "parity-key", "parity-limited-key"
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class FakeAnswerer:
    """Answers without a model: ``model`` picks the behaviour."""

    async def prepare(
        self, principal: Principal, body: ChatCompletionRequest, *, fresh: bool = False
    ) -> PreparedAnswer:
        if body.model == "missing":
            raise NotFound("The model 'missing' does not exist", param="model", code="nf")
        if body.model == "down":
            raise UpstreamUnavailable("every model server is down")
        route = Route("small", "tiny", "alias")
        return PreparedAnswer(route, {"messages": []}, [], principal, "redact")

    async def complete(self, prepared: PreparedAnswer) -> dict[str, Any]:
        prepared.meter(ANSWER["usage"])  # type: ignore[arg-type]
        return {**ANSWER, "headwater": prepared.extension()}

    async def open_stream(self, prepared: PreparedAnswer) -> None:
        return None

    async def stream_sse(
        self, prepared: PreparedAnswer, upstream: None, *, include_usage: bool
    ) -> AsyncGenerator[str]:
        yield f"data: {json.dumps({'choices': [{'delta': {'content': 'Hi'}}]})}\n\n"
        yield "data: [DONE]\n\n"


class FakeRetriever:
    async def search(self, question: str, *, permission: object, top_k: int) -> list[object]:
        return []


class FakeAudit:
    acknowledged = False

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def write(self, record: AuditRecord) -> None:
        self.records.append(record)

    def queue(self, record: AuditRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "keys.json"
    keys = [
        {"key": KEY, "tenant": "acme", "user_id": "alice@acme.com", "groups": ["hr"]},
        {"key": LIMITED_KEY, "tenant": "acme", "user_id": "lim@acme.com"},
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


@pytest.fixture(params=["front_door", "fastapi_route"])
def client(request: pytest.FixtureRequest, keys_file: Path) -> Iterator[TestClient]:
    settings = Settings(api_keys_file=keys_file)
    audit = FakeAudit()
    services = SimpleNamespace(
        authenticator=ApiKeyAuthenticator.from_file(keys_file),
        directory=GroupDirectory(),
        # A burst of three, then one request a minute: a key's fourth request is refused.
        rate_limiter=RateLimiter(rate_per_s=1 / 60, burst=3),
        answerer=FakeAnswerer(),
        audit=audit,
        retriever=FakeRetriever(),
        settings=settings,
    )

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Any]:
        yield services

    app = create_app(settings, open_services=open_services)
    if request.param == "fastapi_route":
        app.chat_front_door = None  # every request through FastAPI's layers and route
    with TestClient(app) as test_client:
        test_client.audit = audit  # type: ignore[attr-defined]
        yield test_client


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _body(model: str = "small", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


# name -> (key, raw body or JSON body)
CASES: dict[str, tuple[str | None, bytes | dict[str, Any]]] = {
    "answer": (KEY, _body()),
    "stream": (KEY, _body(stream=True)),
    "no_credentials": (None, _body()),
    "unknown_key": ("nope", _body()),
    "not_json": (KEY, b"{not json"),
    "not_json_no_credentials": (None, b"{not json"),
    "missing_messages_no_credentials": (None, {"model": "small"}),
    "missing_messages": (KEY, {"model": "small"}),
    "bad_role": (KEY, {"model": "small", "messages": [{"role": "wizard", "content": "x"}]}),
    "unknown_model": (KEY, _body("missing")),
    "upstream_down": (KEY, _body("down")),
    "tools": (KEY, _body(tools=[{"type": "function", "function": {"name": "f"}}])),
    "too_large": (KEY, json.dumps(_body(padding="x" * 1_100_000)).encode()),
    "too_large_no_credentials": (None, json.dumps(_body(padding="x" * 1_100_000)).encode()),
}
KEPT_HEADERS = ("content-type", "www-authenticate", "retry-after", "x-headwater-route")


def _observe(
    client: TestClient, spans: InMemorySpanExporter, key: str | None, body: Any
) -> dict[str, Any]:
    spans.clear()
    if isinstance(body, bytes):
        response = client.post(
            "/v1/chat/completions",
            content=body,
            headers={**_headers(key), "content-type": "application/json"},
        )
    else:
        response = client.post("/v1/chat/completions", json=body, headers=_headers(key))
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.name == "POST /v1/chat/completions"]
    assert len(server) == 1, [s.name for s in finished]
    attributes = server[0].attributes or {}
    server_id = server[0].context.span_id
    content = response.text
    return {
        "status": response.status_code,
        "body": response.json() if "json" in response.headers["content-type"] else content,
        "headers": {h: response.headers.get(h) for h in KEPT_HEADERS},
        "request_id": bool(response.headers.get("x-request-id")),
        "span": {
            "kind": str(server[0].kind),
            "status": attributes.get("http.response.status_code"),
            "route": attributes.get("http.route"),
            "method": attributes.get("http.request.method"),
            "error": str(server[0].status.status_code),
            "children": sorted(
                s.name for s in finished if s.parent and s.parent.span_id == server_id
            ),
        },
    }


EXPECTED_STATUS = {
    "answer": 200,
    "stream": 200,
    "no_credentials": 401,
    "unknown_key": 401,
    "not_json": 400,
    "not_json_no_credentials": 400,  # FastAPI parses JSON before any dependency runs
    "missing_messages_no_credentials": 401,
    "missing_messages": 400,
    "bad_role": 400,
    "unknown_model": 404,
    "upstream_down": 503,
    "tools": 400,
    "too_large": 413,
    "too_large_no_credentials": 413,  # refused on its Content-Length, before anything
}
OBSERVED: dict[str, dict[str, dict[str, Any]]] = {}


@pytest.mark.parametrize("case", list(CASES))
def test_each_path_answers_as_the_contract_says(
    client: TestClient, spans: InMemorySpanExporter, case: str, request: pytest.FixtureRequest
) -> None:
    key, body = CASES[case]
    seen = _observe(client, spans, key, body)
    assert seen["status"] == EXPECTED_STATUS[case], seen
    assert seen["request_id"] and seen["span"]["status"] == seen["status"]
    if seen["status"] >= 400:
        error = seen["body"]["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
    path = request.node.callspec.params["client"]
    OBSERVED.setdefault(case, {})[path] = seen


@pytest.mark.parametrize("case", list(CASES))
def test_the_front_door_and_the_route_answer_alike(case: str) -> None:
    """Runs after the per-path cases above (same module, in order): both observations of
    one case must be equal, field by field."""
    observed = OBSERVED.get(case, {})
    assert set(observed) == {"front_door", "fastapi_route"}, "both paths must have run"
    front, route = observed["front_door"], observed["fastapi_route"]
    assert front == route, json.dumps([front["span"], route["span"]])


def test_rate_limit_answers_alike(client: TestClient, spans: InMemorySpanExporter) -> None:
    burst = [_observe(client, spans, LIMITED_KEY, _body())["status"] for _ in range(3)]
    over = _observe(client, spans, LIMITED_KEY, _body())
    assert burst == [200, 200, 200]
    assert over["status"] == 429 and over["headers"]["retry-after"]
    assert over["body"]["error"]["code"] == "rate_limit_exceeded"


def test_an_answer_is_audited_on_both_paths(client: TestClient) -> None:
    audit: FakeAudit = client.audit  # type: ignore[attr-defined]
    before = len(audit.records)
    response = client.post("/v1/chat/completions", json=_body(), headers=_headers(KEY))
    assert response.status_code == 200
    (record,) = audit.records[before:]
    assert record.request_id == response.headers["x-request-id"]
    assert record.prompt_tokens == 3 and record.completion_tokens == 1


def test_request_ids_are_the_server_s_own_and_a_client_id_is_only_echoed(
    client: TestClient,
) -> None:
    """One client id sent with two requests: two server ids, two audit records (the
    usage ledger counts records by the server's id, so reuse cannot dodge metering)."""
    audit: FakeAudit = client.audit  # type: ignore[attr-defined]
    before = len(audit.records)
    headers = {**_headers(KEY), "x-request-id": "client-chosen-id"}
    first = client.post("/v1/chat/completions", json=_body(), headers=headers)
    second = client.post("/v1/chat/completions", json=_body(), headers=headers)
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2 and "client-chosen-id" not in ids
    assert first.headers["x-client-request-id"] == "client-chosen-id"
    records = audit.records[before:]
    assert {r.request_id for r in records} == ids
    assert {r.client_request_id for r in records} == {"client-chosen-id"}
    odd = client.post(
        "/v1/chat/completions", json=_body(), headers={**_headers(KEY), "x-request-id": "a b"}
    )
    assert "x-client-request-id" not in odd.headers, "an insane id is not echoed"


def test_a_chunked_body_over_the_cap_is_refused_as_it_is_read(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "small", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}]}'

    response = client.post(
        "/v1/chat/completions",
        content=chunks(),
        headers={**_headers(KEY), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_every_authenticated_route_is_rate_limited(client: TestClient) -> None:
    """Search as well as chat: the key's fourth request in a burst of three is refused."""
    statuses = [
        client.post("/v1/search", json={"query": "q"}, headers=_headers(LIMITED_KEY)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]

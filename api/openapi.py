"""The OpenAPI document, telling the truth about errors.

FastAPI documents a 422 for every route with parameters, which we never send (validation
failures are 400 in our one error shape), and none of the statuses we do send. Here each
operation lists what it can answer, with the error shape: 400 where it takes parameters
or a body, 401, 429 and 503 on every authenticated route (a missing or bad credential,
the per-key rate limit, a directory or model server that cannot vouch or answer now),
403 where a role is needed, 404 where a path or a model can be unknown, 413 where a body
is read. ``tests/e2e/test_openapi_conformance.py`` holds the server to it with
schemathesis.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ROLE_ROUTES = frozenset(
    {
        ("/v1/admin/keys", "post"),
        ("/v1/admin/keys", "get"),
        ("/v1/admin/keys/{key_id}", "delete"),
        ("/v1/usage", "get"),
        ("/v1/documents", "post"),
        ("/v1/documents/{doc_id}/acl", "put"),
        ("/v1/documents/{doc_id}", "delete"),
        # api.operations (api.roles.require_role)
        ("/v1/admin/operations", "get"),
        ("/v1/admin/dlq", "get"),
        ("/v1/admin/dlq/{partition}/{offset}/replay", "post"),
        ("/v1/audit", "get"),
        ("/v1/drift", "get"),
    }
)
NOT_FOUND_ROUTES = frozenset(
    {
        ("/v1/chat/completions", "post"),
        ("/v1/admin/keys/{key_id}", "delete"),
        ("/v1/admin/dlq/{partition}/{offset}/replay", "post"),
        ("/v1/drift", "get"),  # drift monitoring turned off
    }
)
_DESCRIPTIONS = {
    400: "Invalid request (a parameter or the body).",
    401: "Missing, unknown or revoked credential, or a disabled account.",
    403: "The caller's roles do not allow this.",
    404: "Not found (a model, a key).",
    413: "The request body is over the cap (HEADWATER_MAX_REQUEST_BYTES).",
    429: "Over the key's rate limit, or a budget cannot cover the request's worst case "
    "(type insufficient_quota, code budget_exceeded); Retry-After says when to retry.",
    503: "Not ready, overloaded or a dependency is unavailable (Retry-After where useful).",
}
# One server-sent event as OpenAPI 3.2 describes an event stream's items: a chunk of the
# stream (JSON in ``data``), or the closing ``[DONE]``.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses ``method path`` can answer (see the module docstring)."""
    statuses: set[int] = set()
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(400)
    if operation.get("requestBody"):
        statuses.add(413)
    if path.startswith("/v1/"):
        statuses |= {401, 429, 503}
    if (path, method) in ROLE_ROUTES:
        statuses.add(403)
    if (path, method) in NOT_FOUND_ROUTES:
        statuses.add(404)
    return sorted(statuses)


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """Every method the document lists for the path template ``path`` matches (a 405's
    ``Allow``: Starlette's own names only the methods of the one route it matched, while
    a path may have several routes, one per method)."""
    for template, operations in truthful_openapi(app).get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return sorted(method.upper() for method in operations)
    return None


def truthful_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with 422 removed and every error status we answer added."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in error_statuses(path, method, operation):
                responses[str(status)] = {
                    "description": _DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": reference}},
                }
    chat = schema.get("paths", {}).get("/v1/chat/completions", {}).get("post")
    if chat is not None:  # "stream": true answers server-sent events
        content = chat["responses"]["200"].setdefault("content", {})
        content["text/event-stream"] = {"schema": SSE_EVENT_SCHEMA}
    readyz = schema.get("paths", {}).get("/readyz", {}).get("get")
    if readyz is not None:
        readyz["responses"]["503"] = {"description": "Not ready: the same body, a check false."}
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    app.openapi_schema = schema
    return schema

"""One error shape for every failure: OpenAI's ``{"error": {...}}``, cleaned of internals."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.openapi import allowed_methods
from core.errors import HeadwaterError

_log = logging.getLogger(__name__)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, *, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None) -> JSONResponse:
    """The error shape for ``status`` (for answers given outside the exception handlers)."""
    error_type = _STATUS_TYPES.get(status, "server_error")
    return _respond(status, error_body(message, error_type=error_type, code=code))


def _respond(
    status: int, body: dict[str, dict[str, str | None]], *, retry_after_s: int | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _headwater_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HeadwaterError)
    return _respond(
        exc.status_code,
        error_body(exc.message, error_type=exc.error_type, param=exc.param, code=exc.code),
        retry_after_s=exc.retry_after_s,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        # Where the parser stopped is no field name (FastAPI puts a character offset there).
        message = "the request body is not valid JSON"
        return _respond(400, error_body(message, error_type="invalid_request_error"))
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request body"
    return _respond(400, error_body(message, error_type="invalid_request_error", param=param))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = _STATUS_TYPES.get(exc.status_code, "server_error")
    code = getattr(exc, "code", None)
    response = _respond(
        exc.status_code, error_body(str(exc.detail), error_type=error_type, code=code)
    )
    # Starlette's own headers go along; a 405's ``Allow`` names every method of the path.
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        methods = allowed_methods(request.app, request.url.path)
        if methods:
            response.headers["Allow"] = ", ".join(methods)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(500, error_body("internal server error", error_type="server_error"))


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HeadwaterError, _headwater_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

"""The error hierarchy. Services raise these; the API maps each to one HTTP status."""

from __future__ import annotations


class HeadwaterError(Exception):
    """Base of every error we raise on purpose. ``message`` is safe to show a caller.
    ``retry_after_s``, when set, becomes a ``Retry-After`` header."""

    status_code = 500
    error_type = "server_error"
    retry_after_s: int | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(HeadwaterError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthenticated(HeadwaterError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDenied(HeadwaterError):
    status_code = 403
    error_type = "permission_error"


class NotFound(HeadwaterError):
    status_code = 404
    error_type = "not_found_error"


class Overloaded(HeadwaterError):
    status_code = 429
    error_type = "rate_limit_error"


class RateLimited(Overloaded):
    """The caller's key sent more than its rate allows."""

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after_s = retry_after_s


class UpstreamUnavailable(HeadwaterError):
    status_code = 503
    error_type = "upstream_unavailable"

    def retry_in(self, seconds: int) -> UpstreamUnavailable:
        """This error, telling the caller when to retry (a ``Retry-After`` header)."""
        self.retry_after_s = seconds
        return self


class BudgetExceeded(HeadwaterError):
    """A request's worst case does not fit a budget (OpenAI's ``insufficient_quota``)."""

    status_code = 429
    error_type = "insufficient_quota"

    def __init__(self, message: str, *, retry_after_s: int | None):
        super().__init__(message, code="budget_exceeded")
        self.retry_after_s = retry_after_s

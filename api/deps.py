"""Small accessors that route handlers declare as typed dependencies."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from opentelemetry import trace

from acl.models import Principal
from api.audit import AuditLog
from api.chat.service import Answerer
from api.services import Services
from core.errors import Unauthenticated
from retrieval.service import Retriever

_tracer = trace.get_tracer("headwater.api")


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a thread pool,
# a hand-off per request that costs more than the work (the gateway's overhead budget).
# Each takes the ``Request`` itself rather than ``ServicesDep``: a flat graph is solved in
# one pass, where nested dependencies cost FastAPI a recursive solve each.


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    return _services(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def _authenticated(request: Request) -> Principal:
    """Authenticate ``Authorization: Bearer <key>``; the span never records the key."""
    services = _services(request)
    with _tracer.start_as_current_span("acl.resolve") as span:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            span.set_attribute("headwater.auth.outcome", "missing")
            raise Unauthenticated(
                "missing credentials: send 'Authorization: Bearer <API key>'",
                code="missing_api_key",
            )
        try:
            credential = credential.strip()
            if credential.count(".") == 2:
                # A JWT: its JWKS may have to be fetched over the network (blocking I/O).
                found = await asyncio.to_thread(services.authenticator.authenticate, credential)
            else:
                found = services.authenticator.authenticate(credential)  # a hash lookup
            principal = services.directory.resolve(found)
        except Unauthenticated:
            span.set_attribute("headwater.auth.outcome", "rejected")
            raise
        span.set_attributes(
            {
                "headwater.auth.outcome": "ok",
                "headwater.tenant": principal.tenant,
                "enduser.id": principal.user_id,
                "headwater.principal.groups": len(principal.groups),
            }
        )
        return principal


async def get_principal(request: Request) -> Principal:
    """The caller, authenticated, once its credential's rate limit allows one more request
    (else 429). Every authenticated route takes its caller through here."""
    principal = await _authenticated(request)
    _services(request).rate_limiter.check(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_retriever(request: Request) -> Retriever:
    return _services(request).retriever


async def get_answerer(request: Request) -> Answerer:
    return _services(request).answerer


async def get_audit(request: Request) -> AuditLog:
    return _services(request).audit


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]

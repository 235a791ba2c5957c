"""OIDC bearer tokens: JWTs verified against the identity provider's keys (JWKS).

Only asymmetric algorithms are accepted (RS256, ES256 by default): ``none`` and HMAC
are refused before any key is looked at, so a token cannot choose how it is checked.
Claims map to a principal by settings (user, groups, tenant, department). Every
failure answers the same "invalid token", with the reason logged at debug level only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from acl.keys import Authenticator
from acl.models import Principal
from core.errors import Unauthenticated

_log = logging.getLogger(__name__)

# key_id of a JWT principal: this prefix and the token's subject (stable, not secret).
OIDC_KEY_PREFIX = "oidc:"
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"})


@dataclass(frozen=True)
class ClaimMapping:
    user: str = "sub"
    groups: str = "groups"
    tenant: str = "tenant"
    department: str = "department"
    roles: str = "roles"


class JwtAuthenticator:
    """Verifies signature, issuer, audience, expiry and not-before, then maps claims."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: JwksKeys,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        claims: ClaimMapping = ClaimMapping(),
        leeway_s: float = 30.0,
    ):
        unsafe = set(algorithms) - ASYMMETRIC
        if unsafe:
            raise ValueError(f"only asymmetric JWT algorithms are allowed, not {sorted(unsafe)}")
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._algorithms = list(algorithms)
        self._claims = claims
        self._leeway_s = leeway_s

    def authenticate(self, credential: str) -> Principal:
        try:
            header = jwt.get_unverified_header(credential)
            if header.get("alg") not in self._algorithms:
                raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} not allowed")
            key = self._keys.key_for(header)
            claims = jwt.decode(
                credential,
                key=key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud", self._claims.user]},
            )
            return self._principal(claims)
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            _log.debug("rejected a bearer token: %s", exc)
            raise Unauthenticated("invalid token", code="invalid_token") from None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        groups = claims.get(self._claims.groups) or []
        if not isinstance(groups, list):
            raise ValueError("groups claim is not a list")
        roles = claims.get(self._claims.roles) or []
        if not isinstance(roles, list):
            raise ValueError("roles claim is not a list")
        tenant = claims.get(self._claims.tenant)
        if not tenant:
            raise ValueError(f"token has no {self._claims.tenant!r} claim")
        return Principal(
            tenant=str(tenant),
            user_id=str(claims[self._claims.user]),
            groups=tuple(str(group) for group in groups),
            department=claims.get(self._claims.department),
            roles=tuple(str(role) for role in roles),
            key_id=f"{OIDC_KEY_PREFIX}{claims.get('sub') or claims[self._claims.user]}",
        )


class JwksKeys:
    """Signing keys by ``kid``: from a JWKS URL (cached, refreshed on an unknown kid) or file."""

    def __init__(self, *, url: str | None = None, path: Path | None = None):
        if (url is None) == (path is None):
            raise ValueError("give exactly one of a JWKS URL or a JWKS file")
        self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300) if url else None
        self._set = jwt.PyJWKSet.from_dict(json.loads(path.read_text())) if path else None

    def key_for(self, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if self._client is not None:
            return self._client.get_signing_key(str(kid)).key
        assert self._set is not None
        for candidate in self._set.keys:
            if kid is None or candidate.key_id == kid:
                return candidate.key
        raise KeyError(f"no key with kid {kid!r}")


class BearerAuthenticator:
    """JWTs (three dot-separated parts) go to OIDC; anything else is an API key."""

    def __init__(self, *, api_keys: Authenticator, oidc: Authenticator | None):
        self._api_keys = api_keys
        self._oidc = oidc

    def authenticate(self, credential: str) -> Principal:
        if self._oidc is not None and credential.count(".") == 2:
            return self._oidc.authenticate(credential)
        return self._api_keys.authenticate(credential)

"""OIDC JWTs: what verifies, and every way a forged or stale token must fail with 401."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acl.keys import ApiKeyAuthenticator, hash_key
from acl.models import Principal
from acl.oidc import BearerAuthenticator, JwksKeys, JwtAuthenticator
from core.errors import Unauthenticated

ISSUER, AUDIENCE = "https://idp.acme.example", "headwater"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def authenticator(tmp_path: Path) -> JwtAuthenticator:
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]})
    )
    return JwtAuthenticator(issuer=ISSUER, audience=AUDIENCE, keys=JwksKeys(path=path))


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@acme.com",
        "iat": now,
        "exp": now + 300,
        "tenant": "acme",
        "groups": ["hr"],
        "department": "hr",
    }
    return {**claims, **override}


def _token(
    claims: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1"
) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_valid_rs256_and_es256_tokens_map_claims_to_a_principal(
    authenticator: JwtAuthenticator,
) -> None:
    expected = Principal(
        tenant="acme",
        user_id="alice@acme.com",
        groups=("hr",),
        department="hr",
        key_id="oidc:alice@acme.com",
    )
    assert authenticator.authenticate(_token(_claims())) == expected
    assert authenticator.authenticate(_token(_claims(), EC_KEY, "ES256", "ec-1")) == expected


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{part(claims)}."


def _tampered() -> str:
    header, _, signature = _token(_claims()).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(groups=["hr", "finance"])).encode())
    return f"{header}.{payload.rstrip(b'=').decode()}.{signature}"


def _hmac_with_public_key() -> str:
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    return b".".join([header, payload, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("expired", lambda: _token(_claims(exp=int(time.time()) - 120))),
        ("not yet valid", lambda: _token(_claims(nbf=int(time.time()) + 600))),
        ("wrong audience", lambda: _token(_claims(aud="another-app"))),
        ("wrong issuer", lambda: _token(_claims(iss="https://evil.example"))),
        ("alg none", lambda: _unsigned(_claims())),
        ("wrong key", lambda: _token(_claims(), OTHER_KEY)),
        ("unknown kid", lambda: _token(_claims(), OTHER_KEY, kid="other")),
        ("tampered claims", _tampered),
        ("HS256 signed with the public key", _hmac_with_public_key),
        ("no tenant claim", lambda: _token({k: v for k, v in _claims().items() if k != "tenant"})),
        ("no expiry", lambda: _token({k: v for k, v in _claims().items() if k != "exp"})),
        ("garbage", lambda: "not.a.jwt"),
    ],
)
def test_bad_tokens_are_rejected_without_detail(
    authenticator: JwtAuthenticator, name: str, make: Any
) -> None:
    with pytest.raises(Unauthenticated) as info:
        authenticator.authenticate(make())
    assert (info.value.message, info.value.code) == ("invalid token", "invalid_token"), name


def test_symmetric_algorithms_cannot_be_configured(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256")]}))
    with pytest.raises(ValueError, match="asymmetric"):
        JwtAuthenticator(
            issuer=ISSUER, audience=AUDIENCE, keys=JwksKeys(path=path), algorithms=("HS256",)
        )


def test_bearer_credentials_route_jwts_to_oidc_and_the_rest_to_api_keys(
    authenticator: JwtAuthenticator, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps({"keys": [{"key_sha256": hash_key("k-1"), "tenant": "acme", "user_id": "bot"}]})
    )
    bearer = BearerAuthenticator(api_keys=ApiKeyAuthenticator.from_file(keys), oidc=authenticator)
    assert bearer.authenticate("k-1").user_id == "bot"
    assert bearer.authenticate(_token(_claims())).user_id == "alice@acme.com"
    with pytest.raises(Unauthenticated):
        bearer.authenticate(_token(_claims(), OTHER_KEY))


def test_settings_refuse_an_issuer_without_audience_or_keys() -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError, match="HEADWATER_OIDC_AUDIENCE"):
        Settings(oidc_issuer=ISSUER)
    Settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=f"{ISSUER}/jwks")


def test_the_roles_claim_maps_to_the_principal_s_roles(authenticator: JwtAuthenticator) -> None:
    admin = authenticator.authenticate(_token(_claims(roles=["admin", "billing"])))
    assert admin.roles == ("admin", "billing")
    assert authenticator.authenticate(_token(_claims())).roles == ()
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(_token(_claims(roles="admin")))  # not a list


def test_production_refuses_the_shipped_dev_keys() -> None:
    from core.settings import DEV_KEYS_FILE, Settings

    with pytest.raises(ValueError, match="development keys"):
        Settings(environment="production", api_keys_file=DEV_KEYS_FILE)
    assert Settings(environment="production", api_keys_source="topic").api_keys_source == "topic"

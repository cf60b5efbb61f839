"""Identity and domain resolvers: verified tokens only, never a client's word."""

from __future__ import annotations

import base64
import json

import pytest

from salesauthz.errors import NotAuthenticatedError
from salesauthz.middleware import (
    HS256Tokens,
    Identity,
    RequestInfo,
    StaticTokens,
    bearer_token,
    domain_from_claim,
    domain_from_host,
    domain_from_path,
    fixed_domain,
)

from .conftest import SECRET


def info(authorization: str | None = None, *, host: str = "api.example", **headers: str) -> RequestInfo:
    values = {k.replace("_", "-"): v for k, v in headers.items()}
    if authorization is not None:
        values["authorization"] = authorization
    return RequestInfo(method="GET", path="/", host=host, headers=values)


def test_bearer_token_parsing() -> None:
    assert bearer_token(info("Bearer abc")) == "abc"
    assert bearer_token(info("bearer  abc ")) == "abc"
    assert bearer_token(info("Basic abc")) is None
    assert bearer_token(info("Bearer ")) is None
    assert bearer_token(info()) is None


def test_static_tokens_map_to_accounts() -> None:
    resolve = StaticTokens({"t-alice": "alice", "t-g": Identity("g_rep", "globex")}, domain="acme")
    assert resolve(info("Bearer t-alice")) == Identity("alice", "acme")
    assert resolve(info("Bearer t-g")) == Identity("g_rep", "globex")
    assert resolve(info("Bearer t-unknown")) is None
    assert resolve(info()) is None


def test_static_tokens_reject_an_empty_token() -> None:
    with pytest.raises(ValueError, match="empty string"):
        StaticTokens({"": "alice"})


def test_headers_naming_an_account_are_ignored() -> None:
    resolve = StaticTokens({"t-alice": "alice"}, domain="acme")
    assert resolve(info(x_user="alice", x_account="alice", x_tenant="acme")) is None


def test_hs256_round_trip() -> None:
    tokens = HS256Tokens(SECRET, audience="crm", issuer="me")
    identity = tokens(info("Bearer " + tokens.mint("alice", domain="acme", role="x")))
    assert identity is not None
    assert (identity.account, identity.domain, identity.claims["role"]) == ("alice", "acme", "x")
    assert tokens(info()) is None


def test_hs256_secret_must_be_long() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        HS256Tokens(b"short")


def _forge(header: object, claims: object, signature: bytes = b"x") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{enc(json.dumps(header).encode())}.{enc(json.dumps(claims).encode())}.{enc(signature)}"


@pytest.mark.parametrize(("token", "message"), [
    ("a.b", "malformed"),
    ("!!!.###.$$$", "malformed"),
    (_forge({"alg": "none"}, {"sub": "alice", "exp": 2**40}), "HS256"),
    (_forge(["HS256"], {"sub": "alice"}), "HS256"),
    (_forge({"alg": "HS256"}, {"sub": "alice", "exp": 2**40}), "signature"),
])
def test_hs256_rejects_bad_tokens(token: str, message: str) -> None:
    with pytest.raises(NotAuthenticatedError, match=message):
        HS256Tokens(SECRET)(info("Bearer " + token))


def test_hs256_rejects_a_token_signed_with_another_secret() -> None:
    other = HS256Tokens("another-secret-which-is-also-long-enough-000").mint("alice", domain="acme")
    with pytest.raises(NotAuthenticatedError, match="signature"):
        HS256Tokens(SECRET)(info("Bearer " + other))


def test_hs256_time_and_audience_checks() -> None:
    now = [1_000_000.0]
    tokens = HS256Tokens(SECRET, audience="crm", issuer="me", leeway=0, clock=lambda: now[0])
    token = tokens.mint("alice", ttl=60)
    assert tokens(info("Bearer " + token)) is not None
    now[0] += 61
    with pytest.raises(NotAuthenticatedError, match="expired"):
        tokens(info("Bearer " + token))
    now[0] = 1_000_000.0
    with pytest.raises(NotAuthenticatedError, match="not valid yet"):
        tokens(info("Bearer " + tokens.mint("alice", nbf=1_000_100)))
    with pytest.raises(NotAuthenticatedError, match="audience"):
        tokens(info("Bearer " + tokens.mint("alice", aud="other")))
    with pytest.raises(NotAuthenticatedError, match="issuer"):
        tokens(info("Bearer " + tokens.mint("alice", iss="evil")))
    with pytest.raises(NotAuthenticatedError, match="'sub' claim"):
        tokens(info("Bearer " + tokens.mint("")))


def test_hs256_claims_must_be_an_object() -> None:
    import hashlib
    import hmac

    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head, body = enc(b'{"alg":"HS256"}'), enc(b"[1]")
    signature = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(NotAuthenticatedError, match="object"):
        HS256Tokens(SECRET).verify(f"{head}.{body}.{enc(signature)}")


def test_domain_resolvers() -> None:
    who = Identity("alice", "acme", {"tenant": "globex", "n": 1})
    assert fixed_domain("acme")(info(), who) == "acme"
    by_host = domain_from_host({"crm.acme.example": "acme"}, suffix="crm.example")
    assert by_host(info(host="CRM.acme.example:8443"), who) == "acme"
    assert by_host(info(host="globex.crm.example"), who) == "globex"
    assert by_host(info(host="a.b.crm.example"), who) is None
    assert by_host(info(host="[::1]:80"), who) is None
    assert by_host(info(host="evil.example"), who) is None
    path_info = RequestInfo("GET", "/t/acme", "h", {}, path_params={"domain": "acme"})
    assert domain_from_path()(path_info, who) == "acme"
    assert domain_from_path("tenant")(path_info, who) is None
    assert domain_from_claim()(info(), who) == "globex"
    assert domain_from_claim("n")(info(), who) == "acme"  # not a string: the identity's own domain

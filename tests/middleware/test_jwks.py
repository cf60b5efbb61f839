"""JWKSTokens: RS256/ES256 tokens of an identity provider, verified against a key set that a real
HTTP server on 127.0.0.1 publishes (no mocks) — rotation, caching, outages, algorithm confusion —
and the 401/403 answers every framework adapter gives for them."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from salesauthz import Authorizer
from salesauthz.errors import NotAuthenticatedError
from salesauthz.middleware import Guard, Identity, JWKSTokens, RequestInfo
from tests._http import QuietHTTPServer

AUDIENCE = "crm-api"
ISSUER = "https://id.example/"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# -- a real identity provider's key endpoint --------------------------------------------------


class KeyServer:
    """Serves ``/jwks.json`` on 127.0.0.1 from whatever ``keys`` holds; counts the fetches. ``mode``
    makes it fail: ``"error"`` (HTTP 503), ``"garbage"`` (not JSON) or ``"stall"`` (answers
    after ``stall`` seconds)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.mode = "ok"
        self.stall = 0.0
        self._closing = threading.Event()  # ends a stall at once when the test is over
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                if owner.mode == "stall" and owner._closing.wait(owner.stall):
                    return
                if owner.mode == "error":
                    self.send_response(503)
                    self.end_headers()
                    return
                body = b"<html>not a key set</html>" if owner.mode == "garbage" else json.dumps(
                    {"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """No request log on stderr."""

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[KeyServer]:
    found = KeyServer()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rotated_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        data["alg"] = "RS256"
    else:
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        data["alg"] = "ES256"
    return {**data, "kid": kid, "use": "sig"}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "mgr_east", "tenant": "acme", "aud": AUDIENCE, "iss": ISSUER,
                            "iat": now, "exp": now + 600}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def mint(key: PrivateKey, kid: str, **changes: Any) -> str:
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(**changes), key, algorithm=algorithm, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A token put together byte by byte, as an attacker would (PyJWT refuses to make these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _hmac_sha256(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def request(token: str | None) -> RequestInfo:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return RequestInfo(method="GET", path="/", host="api.example", headers=headers)


def tokens_for(url: str, **options: Any) -> JWKSTokens:
    return JWKSTokens(url, audience=AUDIENCE, issuer=ISSUER, **options)


def closed_port_url() -> str:
    """The URL of a port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


# -- verification --------------------------------------------------------------------------------


def test_valid_rs256_and_es256_tokens(server: KeyServer, rsa_key: rsa.RSAPrivateKey,
                                      ec_key: ec.EllipticCurvePrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]
    resolve = tokens_for(server.url)
    identity = resolve(request(mint(rsa_key, "rsa-1")))
    assert identity is not None
    assert (identity.account, identity.domain) == ("mgr_east", "acme")
    assert identity.claims["iss"] == ISSUER
    by_ec = resolve(request(mint(ec_key, "ec-1", sub="rep_e1a", tenant=None)))
    assert by_ec is not None
    assert (by_ec.account, by_ec.domain) == ("rep_e1a", None)
    assert resolve(request(mint(rsa_key, "rsa-1", aud=["other-app", AUDIENCE]))) is not None
    assert server.fetches == 1  # one fetch, then the cached set
    assert resolve(request(None)) is None  # no credentials: not an error, nobody


def test_es256_identity_and_claims(server: KeyServer, ec_key: ec.EllipticCurvePrivateKey) -> None:
    server.keys = [public_jwk(ec_key, "ec-1")]
    token = mint(ec_key, "ec-1", sub="rep_e1a", tenant="globex", region="east")
    identity = tokens_for(server.url, domain_claim="tenant")(request(token))
    assert identity is not None
    assert (identity.account, identity.domain, identity.claims["region"]) == ("rep_e1a", "globex", "east")
    token = mint(ec_key, "ec-1", email="r@acme.example")
    other = tokens_for(server.url, account_claim="email", domain_claim=None)
    assert other(request(token)) == Identity("r@acme.example", None,
                                             jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "has expired"),
        ({"aud": "another-app"}, "meant for another audience"),
        ({"iss": "https://evil.example/"}, "unknown issuer"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"exp": None}, "has no 'exp' claim"),
        ({"aud": None}, "has no 'aud' claim"),
        ({"iss": None}, "has no 'iss' claim"),
        ({"sub": None}, "has no 'sub' claim"),
        ({"sub": ""}, "has no 'sub' claim"),
        ({"iat": "yesterday"}, "invalid bearer token"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "not-yet-valid", "no-exp", "no-aud", "no-iss",
         "no-sub", "empty-sub", "bad-iat"],
)
def test_invalid_claims_are_refused(server: KeyServer, rsa_key: rsa.RSAPrivateKey,
                                    changes: dict[str, Any], message: str) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    with pytest.raises(NotAuthenticatedError, match=message):
        tokens_for(server.url)(request(mint(rsa_key, "rsa-1", **changes)))


def test_leeway_accepts_a_token_just_expired(server: KeyServer, rsa_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    just_expired = mint(rsa_key, "rsa-1", exp=int(time.time()) - 5)
    assert tokens_for(server.url, leeway=30)(request(just_expired)) is not None
    with pytest.raises(NotAuthenticatedError, match="expired"):
        tokens_for(server.url, leeway=0)(request(just_expired))


def test_a_signature_by_another_key_under_a_published_kid(server: KeyServer, rsa_key: rsa.RSAPrivateKey,
                                                          rotated_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    with pytest.raises(NotAuthenticatedError, match="signature is invalid"):
        tokens_for(server.url)(request(mint(rotated_key, "rsa-1")))
    tampered = mint(rsa_key, "rsa-1").split(".")
    tampered[1] = _b64(json.dumps(claims(sub="alice")).encode())  # same signature, new claims
    with pytest.raises(NotAuthenticatedError, match="signature is invalid"):
        tokens_for(server.url)(request(".".join(tampered)))


def test_malformed_tokens_and_missing_kid(server: KeyServer, rsa_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    resolve = tokens_for(server.url)
    for junk in ("abc", "a.b.c", "Zm9v.YmFy.YmF6"):
        with pytest.raises(NotAuthenticatedError, match="malformed bearer token"):
            resolve(request(junk))
    no_kid = jwt.encode(claims(), rsa_key, algorithm="RS256")
    with pytest.raises(NotAuthenticatedError, match=r"names no signing key \(kid\)"):
        resolve(request(no_kid))
    assert server.fetches == 0  # none of these was worth a fetch


# -- algorithm confusion ----------------------------------------------------------------------


def test_hs256_token_signed_with_the_public_key_is_refused(server: KeyServer,
                                                           rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic confusion attack: the public key (which anyone can fetch) used as an HMAC
    secret, hoping the verifier feeds the same key to HS256."""
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_text = json.dumps(public_jwk(rsa_key, "rsa-1")).encode()
    resolve = tokens_for(server.url)
    for secret in (pem, jwk_text):
        forged = hand_made({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(sub="alice"),
                           functools.partial(_hmac_sha256, secret))
        with pytest.raises(NotAuthenticatedError, match="must be signed with RS256 or ES256"):
            resolve(request(forged))
    assert server.fetches == 0  # refused on its header, before any key lookup


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE", ""])
def test_unsigned_tokens_are_refused(server: KeyServer, rsa_key: rsa.RSAPrivateKey, algorithm: str) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    unsigned = hand_made({"alg": algorithm, "kid": "rsa-1"}, claims(sub="alice"), lambda data: b"")
    with pytest.raises(NotAuthenticatedError, match="must be signed with"):
        tokens_for(server.url)(request(unsigned))


def test_the_token_algorithm_must_be_its_keys(server: KeyServer, rsa_key: rsa.RSAPrivateKey,
                                              ec_key: ec.EllipticCurvePrivateKey) -> None:
    """An allowed algorithm is not enough: ES256 named on a token whose kid is an RSA key."""
    server.keys = [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]
    crossed = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "rsa-1"})
    with pytest.raises(NotAuthenticatedError, match="algorithm does not match its key"):
        tokens_for(server.url)(request(crossed))
    only_rsa = tokens_for(server.url, algorithms=["RS256"])
    with pytest.raises(NotAuthenticatedError, match=r"must be signed with RS256$"):
        only_rsa(request(mint(ec_key, "ec-1")))


def test_unsafe_configurations_are_refused() -> None:
    for algorithms in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ValueError, match="public-key signatures only"):
            JWKSTokens("https://id.example/jwks.json", audience=AUDIENCE, issuer=ISSUER,
                       algorithms=algorithms)
    with pytest.raises(TypeError, match="sequence of names"):
        JWKSTokens("https://id.example/jwks.json", audience=AUDIENCE, issuer=ISSUER, algorithms="RS256")
    with pytest.raises(ValueError, match="audience and the issuer"):
        JWKSTokens("https://id.example/jwks.json", audience="", issuer=ISSUER)
    with pytest.raises(ValueError, match="unusable JWKS URL 'file:///etc/passwd'"):
        JWKSTokens("file:///etc/passwd", audience=AUDIENCE, issuer=ISSUER)


# -- keys: rotation, caching, outages --------------------------------------------------------


def test_rotation_refetches_once_and_unknown_kids_are_rate_limited(
        server: KeyServer, rsa_key: rsa.RSAPrivateKey, rotated_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "2024")]
    resolve = tokens_for(server.url, refresh_cooldown=1.0, cache_ttl=3600)
    assert resolve(request(mint(rsa_key, "2024"))) is not None
    assert server.fetches == 1
    # The provider rotates: a new key appears. Right after a fetch, an unknown kid is refused
    # without calling the provider again (cooldown) ...
    server.keys = [public_jwk(rsa_key, "2024"), public_jwk(rotated_key, "2025")]
    new_token = mint(rotated_key, "2025")
    with pytest.raises(NotAuthenticatedError, match="does not publish"):
        resolve(request(new_token))
    assert server.fetches == 1
    # ... and once the cooldown is over, the first token signed with it refetches the set.
    time.sleep(1.1)
    assert resolve(request(new_token)) is not None
    assert server.fetches == 2
    assert resolve(request(mint(rsa_key, "2024"))) is not None  # the old key still verifies
    # Made-up kids cost at most one fetch per cooldown, however many arrive.
    for number in range(20):
        with pytest.raises(NotAuthenticatedError, match="does not publish"):
            resolve(request(mint(rsa_key, f"made-up-{number}")))
    assert server.fetches == 2
    time.sleep(1.1)
    with pytest.raises(NotAuthenticatedError, match="does not publish"):
        resolve(request(mint(rsa_key, "made-up-again")))
    assert server.fetches == 3


def test_the_key_set_is_cached_for_its_ttl(server: KeyServer, rsa_key: rsa.RSAPrivateKey,
                                           rotated_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "2024")]
    resolve = tokens_for(server.url, cache_ttl=0.8, refresh_cooldown=3600)
    old_token = mint(rsa_key, "2024")
    for _ in range(10):
        assert resolve(request(old_token)) is not None
    assert server.fetches == 1
    server.keys = [public_jwk(rotated_key, "2025")]  # the old key is withdrawn
    assert resolve(request(old_token)) is not None  # still cached
    time.sleep(0.9)
    with pytest.raises(NotAuthenticatedError, match="does not publish"):
        resolve(request(old_token))  # the set was refetched on expiry: the old key is gone
    assert server.fetches == 2
    assert resolve(request(mint(rotated_key, "2025"))) is not None
    assert server.fetches == 2


@pytest.mark.parametrize("mode", ["error", "garbage", "down"])
def test_an_unreachable_key_set_fails_closed_then_recovers(
        server: KeyServer, rsa_key: rsa.RSAPrivateKey, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    server.mode = mode
    url = closed_port_url() if mode == "down" else server.url
    resolve = tokens_for(url, retry_after=0.8)
    token = mint(rsa_key, "rsa-1")
    with caplog.at_level(logging.WARNING, logger="salesauthz.middleware.identity"), \
            pytest.raises(NotAuthenticatedError, match="signing keys could not be fetched"):
        resolve(request(token))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert url in caplog.records[0].getMessage()
    fetched = server.fetches
    started = time.monotonic()
    for _ in range(5):  # during the pause: refused at once, without calling the provider
        with pytest.raises(NotAuthenticatedError, match="could not be fetched"):
            resolve(request(token))
    assert server.fetches == fetched
    assert time.monotonic() - started < 2.0  # no waiting on the provider (a loaded machine: slack)
    assert len(caplog.records) == 1  # the outage is logged once, not per request
    if mode == "down":
        return
    server.mode = "ok"
    time.sleep(0.9)
    assert resolve(request(token)) is not None  # the provider is back: so are the tokens


def test_a_stalled_key_set_times_out(server: KeyServer, rsa_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    server.mode, server.stall = "stall", 3.0
    resolve = tokens_for(server.url, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(NotAuthenticatedError, match="could not be fetched"):
        resolve(request(mint(rsa_key, "rsa-1")))
    assert time.monotonic() - started < 2.0


def test_resolve_async_leaves_the_event_loop_free_during_a_fetch(server: KeyServer,
                                                                 rsa_key: rsa.RSAPrivateKey) -> None:
    server.keys = [public_jwk(rsa_key, "rsa-1")]
    server.mode, server.stall = "stall", 0.6  # a slow provider, still within the timeout
    resolve = tokens_for(server.url)
    token = mint(rsa_key, "rsa-1")

    async def main() -> tuple[Identity | None, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        identity = await resolve.resolve_async(request(token))
        task.cancel()
        return identity, ticks

    identity, ticks = asyncio.run(main())
    assert identity is not None
    assert identity.account == "mgr_east"
    assert ticks >= 5  # the loop kept running while the keys were fetched


def test_without_the_jwt_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)  # what an environment without PyJWT sees
    with pytest.raises(ImportError, match=r"pip install 'salesauthz\[jwt\]'"):
        JWKSTokens("https://id.example/jwks.json", audience=AUDIENCE, issuer=ISSUER)


def test_jwt_is_imported_only_when_used() -> None:
    code = "import sys, salesauthz.middleware; print('jwt' in sys.modules, 'cryptography' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# -- what a web app answers (401 or 403), in every framework --------------------------------------

Get = Callable[[str, dict[str, str]], tuple[int, dict[str, str]]]
ROUTE = "/customers/1/delete"  # customer:delete — in the sample only alice (admin) may
INVALID_TOKEN = 'Bearer realm="salesauthz", error="invalid_token"'


def _fastapi(guard: Guard) -> Get:
    from fastapi import Depends, FastAPI

    from salesauthz.middleware.fastapi import FastAPIAuthz

    from ._clients import TestClient

    app = FastAPI()
    web = FastAPIAuthz(guard)
    web.install(app)

    @app.get("/customers/{customer_id}/delete", dependencies=[Depends(web.require("customer", "delete"))])
    def delete(customer_id: int) -> dict[str, int]:
        return {"deleted": customer_id}

    client = TestClient(app)

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        response = client.get(path, headers=headers)
        return response.status_code, dict(response.headers)

    return get


def _starlette(guard: Guard) -> Get:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from salesauthz.middleware.asgi import AuthzMiddleware

    from ._clients import TestClient

    async def delete(request: Request) -> JSONResponse:
        return JSONResponse({"deleted": request.path_params["customer_id"]})

    app = Starlette(routes=[Route("/customers/{customer_id:int}/delete", delete)])
    app.add_middleware(AuthzMiddleware, guard=guard,
                       rules={"GET /customers/{customer_id:int}/delete": ("customer", "delete")})
    client = TestClient(app)

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        response = client.get(path, headers=headers)
        return response.status_code, dict(response.headers)

    return get


def _flask(guard: Guard) -> Get:
    from flask import Flask, jsonify
    from flask.typing import ResponseReturnValue

    from salesauthz.middleware.flask import FlaskAuthz

    app = Flask(__name__)
    authz = FlaskAuthz(app, guard=guard)

    @app.get("/customers/<int:customer_id>/delete")
    @authz.require("customer", "delete")
    def delete(customer_id: int) -> ResponseReturnValue:
        return jsonify({"deleted": customer_id})

    client = app.test_client()

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        response = client.get(path, headers=headers)
        return response.status_code, dict(response.headers)

    return get


def _wsgi(guard: Guard) -> Get:
    from werkzeug.test import Client

    from salesauthz.middleware.wsgi import WSGIAuthzMiddleware

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"deleted": 1}']

    rules = {"GET /customers/{id}/delete": ("customer", "delete")}
    client = Client(WSGIAuthzMiddleware(app, guard, rules=rules))

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        response = client.get(path, headers=headers)
        return response.status_code, dict(response.headers)

    return get


def _django(guard: Guard) -> Get:
    from django.test import Client

    client = Client()

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        from django.test import override_settings

        from salesauthz.middleware import django as dj

        settings = {"ROOT_URLCONF": "tests.middleware.djangoapp.app", "ALLOWED_HOSTS": ["testserver"],
                    "MIDDLEWARE": ["salesauthz.middleware.django.SalesAuthzMiddleware"],
                    "SALESAUTHZ_RULES": {"GET /customers/<int:pk>/delete": ("customer", "delete")}}
        dj.configure(guard)
        try:
            with override_settings(**settings):
                response = client.get(path, headers=headers)
        finally:
            dj.configure(None)
        return response.status_code, dict(response.items())

    return get


FRAMEWORKS: dict[str, tuple[Callable[[Guard], Get], bool]] = {
    # name: (app builder, whether it takes an async identity resolver)
    "fastapi": (_fastapi, True),
    "starlette": (_starlette, True),
    "flask": (_flask, False),
    "wsgi": (_wsgi, False),
    "django": (_django, False),
}


def _www_authenticate(headers: dict[str, str]) -> str:
    return next((value for name, value in headers.items() if name.lower() == "www-authenticate"), "")


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_answers_401_without_a_verified_identity_and_403_for_an_unknown_account(
        framework: str, server: KeyServer, sample: Authorizer, rsa_key: rsa.RSAPrivateKey) -> None:
    build, asynchronous = FRAMEWORKS[framework]
    server.keys = [public_jwk(rsa_key, "rsa-1")]

    def app_for(url: str) -> Get:
        tokens = tokens_for(url)
        return build(Guard(sample, identity=tokens.resolve_async if asynchronous else tokens))

    get = app_for(server.url)

    def as_(account: str, **changes: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint(rsa_key, "rsa-1", sub=account, **changes)}

    assert get(ROUTE, as_("alice"))[0] == 200
    # Authenticated, but salesauthz knows no such account (or it holds no such right): 403.
    # Signing in again would not change the answer, so it is not a 401.
    for account in ("nobody", "rep_e1a", "gone_1"):
        status, headers = get(ROUTE, as_(account))
        assert (account, status) == (account, 403)
        assert not _www_authenticate(headers)
    assert get(ROUTE, as_("alice", tenant="globex"))[0] == 403  # alice is no one in globex
    # No credentials: 401 and a challenge without an error code (RFC 6750).
    status, headers = get(ROUTE, {})
    assert (status, _www_authenticate(headers)) == (401, 'Bearer realm="salesauthz"')
    # Credentials that do not verify: 401 with error="invalid_token".
    for headers_sent in (as_("alice", exp=int(time.time()) - 3600), as_("alice", aud="other"),
                         {"Authorization": "Bearer not-a-token"}):
        status, headers = get(ROUTE, headers_sent)
        assert (status, _www_authenticate(headers)) == (401, INVALID_TOKEN)
    # The identity provider's keys cannot be fetched: the token cannot be verified, so 401 too.
    status, headers = app_for(closed_port_url())(ROUTE, as_("alice"))
    assert (status, _www_authenticate(headers)) == (401, INVALID_TOKEN)

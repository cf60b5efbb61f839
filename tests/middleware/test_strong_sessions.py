"""Strong sessions on the web: the request context (``mfa`` from ``amr``/``acr``, ``ip``
honouring trusted proxies) reaches every decision, and a denial a second factor would lift is
answered 401 with a step-up challenge, not 403 — in ASGI, WSGI and Django alike."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from django.test import RequestFactory
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from salesauthz import Authorizer, ForbiddenError, Record
from salesauthz.middleware import (
    Guard,
    HS256Tokens,
    RequestInfo,
    StepUpRequired,
    assurance_level,
    client_address,
    problem_for,
)
from salesauthz.middleware import django as dj
from salesauthz.middleware.asgi import AuthzMiddleware
from salesauthz.middleware.wsgi import WSGIAuthzMiddleware, context_of
from salesauthz.models import DomainDocument, compile_document

from .conftest import SECRET

DOCUMENT: dict[str, Any] = {
    "domain": "acme",
    "resources": {"customer": ["read", "export", "delete"]},
    "departments": {"sales": {}},
    "roles": {"seller": {"permissions": [
        {"scope": "all", "customer": ["read"]},
        {"scope": "all", "requires": {"mfa": True}, "customer": ["export"]},
        {"scope": "all", "requires": {"ip": ["10.0.0.0/8"]}, "customer": ["delete"]},
    ]},
              "boss": {"permissions": [
                  {"scope": "all", "requires": {"mfa": 2}, "customer": ["export"]}]}},
    "accounts": {"rep": {"department": "sales", "roles": ["seller"]},
                 "chief": {"department": "sales", "roles": ["boss"]}},
}
PROXY = "192.0.2.10"


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


@pytest.fixture
def tokens() -> HS256Tokens:
    return HS256Tokens(SECRET)


def guard_for(authz: Authorizer, tokens: HS256Tokens) -> Guard:
    return Guard(authz, identity=tokens, trusted_proxies=[f"{PROXY}/32"],
                 acr_levels={"urn:acme:loa:2": 2}, step_up_acr={1: "mfa", 2: "urn:acme:loa:2"})


def bearer(tokens: HS256Tokens, account: str = "rep", **claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.mint(account, domain="acme", **claims)}


# -- the helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "level"), [
    ({}, 0),
    ({"amr": ["pwd"]}, 0),
    ({"amr": ["pwd", "otp"]}, 1),
    ({"amr": ["mfa"]}, 1),
    ({"amr": ["pwd", "pwd"]}, 0),
    ({"amr": "mfa"}, 0),  # not a list: nothing said
    ({"amr": ["mfa"], "acr": "urn:acme:loa:2"}, 2),
    ({"acr": "urn:acme:loa:2"}, 2),
    ({"acr": "urn:other"}, 0),
])
def test_assurance_level(claims: dict[str, Any], level: int) -> None:
    assert assurance_level(claims, {"urn:acme:loa:2": 2}) == level


TRUSTED = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")]


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.7", "10.1.1.1", "203.0.113.7"),           # not from a proxy: the header is ignored
    (PROXY, "10.1.1.1", "10.1.1.1"),                       # from a proxy: the hop before it
    (PROXY, "10.9.9.9, 10.1.1.1", "10.1.1.1"),             # the client's own claim is not believed
    (PROXY, "10.1.1.1, 192.0.2.11", "10.1.1.1"),           # trusted hops skipped
    (PROXY, "", PROXY),                                    # no header: the proxy itself
    (PROXY, "10.1.1.1, nonsense", None),                   # a malformed hop: no address
    (None, "10.1.1.1", None),
    ("not an address", "", None),
    ("2001:db8::1", "2001:db8::2, 10.1.1.1", "10.1.1.1"),
])
def test_client_address(peer: str | None, forwarded: str, client: str | None) -> None:
    assert client_address(peer, {"x-forwarded-for": forwarded}, TRUSTED) == client


def test_a_bad_trusted_proxy_is_refused(authz: Authorizer, tokens: HS256Tokens) -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8' is not a network"):
        Guard(authz, identity=tokens, trusted_proxies=["10.0.0.300/8"])


def test_the_context_reaches_decisions_and_a_step_up_is_asked(authz: Authorizer,
                                                              tokens: HS256Tokens) -> None:
    guard = guard_for(authz, tokens)
    record = Record("customer", owner="x")

    def bound(headers: dict[str, str], client: str | None = "203.0.113.7") -> Any:
        info = RequestInfo("GET", "/", "h", {k.lower(): v for k, v in headers.items()},
                           client=client)
        return guard.resolve(info)

    weak = bound(bearer(tokens))
    assert weak.context == {"mfa": 0, "ip": "203.0.113.7"}
    with pytest.raises(StepUpRequired) as caught:
        weak.authorize("export", record)
    assert caught.value.acr_values == "mfa"
    strong = bound(bearer(tokens, amr=["pwd", "otp"]))
    assert strong.authorize("export", record) is record
    # Level 2: the step-up asks for the acr that gives it.
    with pytest.raises(StepUpRequired) as caught:
        bound(bearer(tokens, "chief", amr=["mfa"])).authorize("export", record)
    assert caught.value.acr_values == "urn:acme:loa:2"
    assert bound(bearer(tokens, "chief", acr="urn:acme:loa:2")).authorize("export", record)
    # A denial a second factor would not lift stays 403: the network.
    with pytest.raises(ForbiddenError) as denied:
        strong.authorize("delete", record)
    assert problem_for(denied.value).status == 403
    inside = bound({**bearer(tokens), "X-Forwarded-For": "10.1.2.3"}, client=PROXY)
    assert inside.context["ip"] == "10.1.2.3"
    assert inside.authorize("delete", record) is record
    spoofed = bound({**bearer(tokens), "X-Forwarded-For": "10.1.2.3"})  # not through the proxy
    assert not spoofed.allows("delete", record)


def test_the_step_up_answer(authz: Authorizer, tokens: HS256Tokens) -> None:
    error = StepUpRequired("export on customer needs a stronger authentication",
                           acr_values="mfa")
    problem = problem_for(error, realm="crm")
    assert problem.status == 401
    assert dict(problem.headers)["WWW-Authenticate"] == (
        'Bearer realm="crm", error="insufficient_user_authentication", '
        'error_description="a stronger authentication is required", acr_values="mfa"')
    assert problem.body["acr_values"] == "mfa"


# -- the frameworks ----------------------------------------------------------------------------


def check_step_up(get: Any, tokens: HS256Tokens) -> None:
    weak = get("/export", bearer(tokens))
    assert weak.status_code == 401
    assert 'acr_values="mfa"' in weak.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in weak.headers["www-authenticate"]
    assert get("/export", bearer(tokens, amr=["mfa"])).status_code == 200
    assert get("/delete", bearer(tokens, amr=["mfa"])).status_code == 403  # the network
    assert get("/delete", {**bearer(tokens), "X-Forwarded-For": "10.7.7.7"}).status_code == 403
    assert get("/export", {}).status_code == 401


def test_asgi(authz: Authorizer, tokens: HS256Tokens) -> None:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def record_level(request: Request) -> PlainTextResponse:
        request.state.salesauthz.authorize("export", Record("customer", owner="x"))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/export", ok), Route("/delete", ok),
                            Route("/record", record_level)])
    app.add_middleware(AuthzMiddleware, guard=guard_for(authz, tokens), rules={
        "GET /export": ("customer", "export"), "GET /delete": ("customer", "delete"),
        "GET /record": ("customer", "read")})
    client = TestClient(app)
    check_step_up(lambda path, headers: client.get(path, headers=headers), tokens)
    assert client.get("/record", headers=bearer(tokens)).status_code == 401
    assert client.get("/record", headers=bearer(tokens, amr=["mfa"])).status_code == 200
    proxied = TestClient(app, client=(PROXY, 5000))
    assert proxied.get("/delete", headers={**bearer(tokens), "X-Forwarded-For": "10.7.7.7"}
                       ).status_code == 200


def test_wsgi(authz: Authorizer, tokens: HS256Tokens) -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        assert context_of(environ) is not None
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = Flask(__name__)
    app.wsgi_app = WSGIAuthzMiddleware(wsgi_app, guard_for(authz, tokens), rules={  # type: ignore[method-assign]
        "GET /export": ("customer", "export"), "GET /delete": ("customer", "delete")})
    client = app.test_client()
    check_step_up(lambda path, headers: client.get(path, headers=headers), tokens)
    proxied = client.get("/delete", headers={**bearer(tokens), "X-Forwarded-For": "10.7.7.7"},
                         environ_base={"REMOTE_ADDR": PROXY})
    assert proxied.status_code == 200


def test_django(authz: Authorizer, tokens: HS256Tokens) -> None:
    dj.configure(guard_for(authz, tokens))
    try:
        factory = RequestFactory()
        record = Record("customer", owner="x")
        weak = factory.get("/x", HTTP_AUTHORIZATION=bearer(tokens)["Authorization"],
                           REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.7.7.7")
        context = dj.context_of(weak)
        assert context.context == {"mfa": 0, "ip": "10.7.7.7"}
        assert context.authorize("delete", record) is record
        with pytest.raises(StepUpRequired) as caught:
            context.authorize("export", record)
        response = dj.problem_response(weak, caught.value)
        assert response.status_code == 401
        assert 'acr_values="mfa"' in response["WWW-Authenticate"]
        strong = factory.get("/x", HTTP_AUTHORIZATION=bearer(tokens, amr=["mfa"])["Authorization"],
                             REMOTE_ADDR="203.0.113.9")
        context = dj.context_of(strong)
        assert context.context == {"mfa": 1, "ip": "203.0.113.9"}
        assert context.authorize("export", record) is record
        assert not context.allows("delete", record)
    finally:
        dj.configure(None)

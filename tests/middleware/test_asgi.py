"""AuthzMiddleware on a real Starlette app and on a bare ASGI callable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from salesauthz import Authorizer, Record
from salesauthz.errors import AuthorizationError
from salesauthz.middleware import Guard, Identity, Problem, RequestAuthz, RequestInfo
from salesauthz.middleware.asgi import AuthzMiddleware, starlette_user

from ._clients import TestClient
from .conftest import DecisionRecords

CUSTOMERS = {
    "1": Record("customer", owner="rep_e1a", department="east-1", id="1"),
    "3": Record("customer", owner="rep_e1b", department="east-1", id="3"),
    "5": Record("customer", owner="rep_w1", department="west-1", id="5"),
}
SESSIONS = {"s-rep": "rep_e1a", "s-lead": "lead_e1", "s-cs": "cs_1"}  # server-side session table


class SessionBackend(AuthenticationBackend):
    """Starlette authentication from a server-side session table (the app's own login)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        account = SESSIONS.get(conn.cookies.get("session", ""))
        return (AuthCredentials(["authenticated"]), SimpleUser(account)) if account else None


async def list_customers(request: Request) -> JSONResponse:
    context: RequestAuthz = request.state.salesauthz
    flt = context.scope_filter("read", "customer")
    return JSONResponse(sorted(k for k, r in CUSTOMERS.items() if flt.matches(r.owner, r.department)))


async def get_customer(request: Request) -> JSONResponse:
    context: RequestAuthz = request.state.salesauthz
    record = context.authorize("read", CUSTOMERS.get(request.path_params["customer_id"]))
    return JSONResponse({"id": record.id, "route": context.route})


async def plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def build(sample: Authorizer, **options: Any) -> Starlette:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield

    app = Starlette(routes=[
        Route("/customers", list_customers),
        Route("/customers/{customer_id}", get_customer),
        Route("/health", plain),
        Route("/unruled", plain),
        WebSocketRoute("/ws", echo),
    ], lifespan=lifespan)
    app.state.events = events

    guard = Guard(sample, identity=starlette_user, domain=lambda info, who: "acme", hide_denied=True)
    app.add_middleware(CORSMiddleware, allow_origins=["https://crm.example"], allow_methods=["*"])
    rules = options.pop("rules", {
        "GET /customers": ("customer", "read"),
        "GET /customers/{customer_id}": ("customer", "read"),
        "/health": None,
    })
    app.add_middleware(AuthzMiddleware, guard=guard, rules=rules, **options)
    app.add_middleware(AuthenticationMiddleware, backend=SessionBackend())
    return app


@pytest.fixture
def client(sample: Authorizer) -> TestClient:
    return TestClient(build(sample))


def as_(session: str) -> dict[str, str]:
    return {"Cookie": f"session={session}"}


def test_allowed_with_parameterised_route(client: TestClient, decisions: DecisionRecords) -> None:
    response = client.get("/customers/1", headers=as_("s-rep") | {"X-Request-Id": "r-42"})
    assert response.status_code == 200
    assert response.json() == {"id": "1", "route": "/customers/{customer_id}"}
    kinds = [(d["kind"], d["route"], d["record_id"], d["allowed"]) for d in decisions.decisions]
    assert kinds == [("route", "/customers/{customer_id}", None, True),
                     ("record", "/customers/{customer_id}", "1", True)]
    assert {d["request_id"] for d in decisions.decisions} == {"r-42"}


def test_record_level_deny_is_hidden_as_404(client: TestClient, decisions: DecisionRecords) -> None:
    response = client.get("/customers/5", headers=as_("s-rep"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert decisions.decisions[-1]["allowed"] is False
    assert decisions.decisions[-1]["record_id"] == "5"


def test_route_level_deny_is_403(sample: Authorizer) -> None:
    client = TestClient(build(sample, rules=None))
    response = client.get("/customers", headers=as_("s-rep"))
    assert response.status_code == 403  # no rule for the route: fail closed
    assert response.json()["detail"] == "this route has no authorization rule"


def test_list_is_filtered(client: TestClient) -> None:
    assert client.get("/customers", headers=as_("s-rep")).json() == ["1"]
    assert client.get("/customers", headers=as_("s-lead")).json() == ["1", "3"]
    assert client.get("/customers", headers=as_("s-cs")).json() == ["1", "3", "5"]


def test_unauthenticated_is_401(client: TestClient) -> None:
    response = client.get("/customers")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="salesauthz"'
    assert response.json()["title"] == "Unauthorized"
    assert client.get("/customers", headers=as_("forged")).status_code == 401
    # A header naming an account is not an identity.
    assert client.get("/customers", headers={"X-User": "alice"}).status_code == 401


def test_unknown_route_and_public_route(client: TestClient) -> None:
    assert client.get("/nowhere", headers=as_("s-rep")).status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.get("/health").text == "ok"
    assert client.get("/unruled", headers=as_("s-rep")).status_code == 403


def test_unmatched_pass(sample: Authorizer) -> None:
    client = TestClient(build(sample, unmatched="pass"))
    assert client.get("/unruled", headers=as_("s-rep")).text == "ok"
    assert client.get("/unruled").status_code == 401  # still authenticated


def test_preflight_passes(client: TestClient) -> None:
    response = client.options("/customers", headers={
        "Origin": "https://crm.example", "Access-Control-Request-Method": "GET"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://crm.example"
    # A plain OPTIONS is no preflight; the route has no OPTIONS handler, so the app says 405.
    assert client.options("/customers").status_code == 405


def test_websocket_and_lifespan_pass_through(sample: Authorizer) -> None:
    app = build(sample)
    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "hello"
    assert app.state.events == ["startup"]


def test_custom_error_hook(sample: Authorizer) -> None:
    seen: list[int] = []

    def on_error(scope: Any, error: AuthorizationError) -> Problem:
        seen.append(1)
        return Problem(418, {"title": "teapot", "path": scope["path"]})

    client = TestClient(build(sample, on_error=on_error))
    response = client.get("/customers")
    assert response.status_code == 418
    assert response.json() == {"title": "teapot", "path": "/customers"}
    assert seen == [1]


def test_bad_unmatched_option(sample: Authorizer) -> None:
    with pytest.raises(ValueError, match="unmatched"):
        AuthzMiddleware(build(sample), Guard(sample, identity=starlette_user), unmatched="maybe")  # type: ignore[arg-type]


def test_starlette_user_without_identity_uses_display_name() -> None:
    class Named(BaseUser):
        @property
        def is_authenticated(self) -> bool:
            return True

        @property
        def display_name(self) -> str:
            return "alice"

    class Nameless(Named):
        @property
        def display_name(self) -> str:
            return ""

    def info(user: BaseUser) -> RequestInfo:
        scope = {"type": "http", "headers": [], "user": user}
        return RequestInfo("GET", "/", "h", {}, native=HTTPConnection(scope))

    assert starlette_user(info(Named())) == Identity("alice")
    assert starlette_user(info(Nameless())) is None
    assert starlette_user(RequestInfo("GET", "/", "h", {})) is None


def test_mounted_routes_are_matched_by_their_full_template(sample: Authorizer) -> None:
    from starlette.routing import Mount

    inner = [Route("/customers/{customer_id}", get_customer), Route("/other", plain)]
    app = Starlette(routes=[Mount("/v1", routes=inner)])
    guard = Guard(sample, identity=starlette_user, domain=lambda info, who: "acme")
    app.add_middleware(AuthzMiddleware, guard=guard,
                       rules={"GET /v1/customers/{customer_id}": ("customer", "read")})
    app.add_middleware(AuthenticationMiddleware, backend=SessionBackend())
    client = TestClient(app)
    response = client.get("/v1/customers/1", headers=as_("s-rep"))
    assert response.json() == {"id": "1", "route": "/v1/customers/{customer_id}"}
    assert client.get("/v1/other", headers=as_("s-rep")).status_code == 403
    assert client.get("/v1/missing", headers=as_("s-rep")).status_code == 404


# -- a bare ASGI app: the rules table alone decides ---------------------------------------------


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    context = scope["state"].get("salesauthz")
    body = f"{context.account}@{context.domain} {context.route}".encode() if context else b"public"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def late_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise AuthorizationError("raised after the response started")


def test_errors_after_the_response_started_propagate(sample: Authorizer) -> None:
    app = AuthzMiddleware(late_app, Guard(sample, identity=token_identity), unmatched="pass")
    with pytest.raises(AuthorizationError, match="after the response started"):
        TestClient(app).get("/", headers={"Authorization": "Bearer t-rep"})


async def token_identity(info: RequestInfo) -> Identity | None:  # an async resolver
    return {"Bearer t-rep": Identity("rep_e1a", "acme")}.get(info.headers.get("authorization", ""))


def test_bare_asgi_app(sample: Authorizer) -> None:
    guard = Guard(sample, identity=token_identity)
    app = AuthzMiddleware(bare_app, guard, rules={"GET /customers/{id}": ("customer", "read"),
                                                  "POST /customers": ("customer", "delete")},
                          public=["/status"])
    client = TestClient(app)
    rep = {"Authorization": "Bearer t-rep"}
    assert client.get("/customers/9", headers=rep).text == "rep_e1a@acme /customers/{id}"
    assert client.post("/customers", headers=rep).status_code == 403
    assert client.get("/status").text == "public"
    assert client.get("/other", headers=rep).status_code == 403  # not in the table: fail closed
    assert client.get("/customers/9").status_code == 401
    passing = TestClient(AuthzMiddleware(bare_app, guard, rules={}, unmatched="pass"))
    assert passing.get("/other", headers=rep).text == "rep_e1a@acme None"


def test_an_identity_is_never_read_back_from_shared_state(sample: Authorizer) -> None:
    import asyncio

    from salesauthz.errors import NotAuthenticatedError
    from salesauthz.middleware.asgi import context_for

    guard = Guard(sample, identity=token_identity)
    shared: dict[str, Any] = {}  # a server that (wrongly) shares one state dict between requests
    first = {"type": "http", "method": "GET", "path": "/", "headers": [(b"authorization", b"Bearer t-rep")],
             "state": shared}
    assert asyncio.run(context_for(guard, first)).account == "rep_e1a"
    assert shared["salesauthz"].account == "rep_e1a"
    second = {"type": "http", "method": "GET", "path": "/", "headers": [], "state": shared}
    with pytest.raises(NotAuthenticatedError):
        asyncio.run(context_for(guard, second))


def test_apps_under_a_root_path_match_their_own_templates(sample: Authorizer) -> None:
    client = TestClient(build(sample), root_path="/crm")
    response = client.get("/crm/customers/1", headers=as_("s-rep"))
    assert response.json() == {"id": "1", "route": "/customers/{customer_id}"}
    assert client.get("/crm/customers/5", headers=as_("s-rep")).status_code == 404


# -- remembered routes: the same answers as resolving every request afresh ----------------------


def middleware_of(app: Starlette) -> AuthzMiddleware:
    """The app's AuthzMiddleware, in the middleware stack the app will use."""
    layer: Any = app.build_middleware_stack()
    app.middleware_stack = layer
    while not isinstance(layer, AuthzMiddleware):
        layer = layer.app
    return layer


def test_remembered_routes_stay_bounded_and_keep_each_paths_parameters(
        sample: Authorizer, monkeypatch: pytest.MonkeyPatch) -> None:
    import salesauthz.middleware.asgi as asgi

    monkeypatch.setattr(asgi, "ROUTE_CACHE_SIZE", 4)
    app = build(sample)
    layer = middleware_of(app)
    seen: list[Any] = []

    def identity(info: RequestInfo) -> Identity | None:
        seen.append(dict(info.path_params))
        return starlette_user(info)

    layer.guard.identity = identity
    client = TestClient(app)
    for round_number in range(3):
        for customer in ("1", "3", "5", "7", "1"):
            response = client.get(f"/customers/{customer}", headers=as_("s-rep"))
            assert response.status_code == (200 if customer == "1" else 404), (round_number, customer)
            assert seen[-1] == {"customer_id": customer}
            assert len(layer._recent) <= 4
        assert client.get("/unruled", headers=as_("s-rep")).status_code == 403  # fail closed, again
        assert client.get("/health").status_code == 200
        assert client.get("/missing", headers=as_("s-rep")).status_code == 404
    assert client.get("/customers/1", headers=as_("s-rep")).status_code == 200
    remembered = layer._recent[("GET", "", "/customers/1")]
    assert remembered is not None
    with pytest.raises(TypeError):
        remembered.params["customer_id"] = "5"  # type: ignore[index]  # read-only, shared by requests


def test_routes_added_after_the_first_request_are_matched(sample: Authorizer) -> None:
    app = build(sample, rules={"GET /customers/{customer_id}": ("customer", "read"),
                               "GET /late": ("customer", "delete")})
    client = TestClient(app)
    assert client.get("/customers/1", headers=as_("s-rep")).status_code == 200
    assert client.get("/late", headers=as_("s-rep")).status_code == 404  # no such route yet
    app.router.routes.append(Route("/late", plain))
    assert client.get("/late", headers=as_("s-rep")).status_code == 403  # its rule now applies


def test_host_routes_are_resolved_per_request(sample: Authorizer) -> None:
    from starlette.routing import Host, Router

    admin = Router(routes=[Route("/customers/{key}", plain)])
    app = Starlette(routes=[Host("admin.example", app=admin),
                            Route("/customers/{customer_id}", plain)])
    guard = Guard(sample, identity=starlette_user, domain=lambda info, who: "acme")
    app.add_middleware(AuthzMiddleware, guard=guard, unmatched="deny",
                       rules={"GET /customers/{customer_id}": ("customer", "read")})
    app.add_middleware(AuthenticationMiddleware, backend=SessionBackend())
    client = TestClient(app)
    for _ in range(2):
        # The admin host's route has no rule: denied. Elsewhere, the same path has one.
        assert client.get("/customers/1", headers=as_("s-rep") | {"Host": "admin.example"}
                          ).status_code == 403
        assert client.get("/customers/1", headers=as_("s-rep") | {"Host": "crm.example"}).text == "ok"

"""The Flask extension and the WSGI middleware, with Flask's own test client."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from flask import Flask, g, jsonify
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from salesauthz import Authorizer, Record
from salesauthz.errors import ForbiddenError
from salesauthz.middleware import Guard, HS256Tokens, Identity, RequestInfo, fixed_domain
from salesauthz.middleware.flask import FlaskAuthz, flask_user
from salesauthz.middleware.wsgi import WSGIAuthzMiddleware, context_of

from .conftest import DecisionRecords, bearer

ROWS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "owner": "rep_e1a", "department": "east-1"},
    3: {"id": 3, "owner": "rep_e1b", "department": "east-1"},
    5: {"id": 5, "owner": "rep_w1", "department": "west-1"},
}
SESSIONS = {"s-rep": "rep_e1a", "s-lead": "lead_e1", "s-admin": "alice"}  # server-side sessions


def to_record(row: dict[str, Any]) -> Record:
    return Record("customer", owner=row["owner"], department=row["department"], id=str(row["id"]))


def build(sample: Authorizer, **options: Any) -> tuple[Flask, FlaskAuthz]:
    app = Flask(__name__)
    app.testing = True  # let unexpected errors propagate to the test

    @app.before_request
    def login() -> None:  # the app's own login: a server-side session table
        from flask import request

        account = SESSIONS.get(request.cookies.get("session", ""))
        if account is not None:
            g.user = account

    authz = FlaskAuthz(guard=Guard(sample, identity=flask_user, domain=fixed_domain("acme"), **options))
    authz.init_app(app)

    @app.get("/customers")
    @authz.require("customer", "read")
    def listing() -> ResponseReturnValue:
        flt = authz.scope_filter("customer")
        return jsonify([k for k, r in ROWS.items() if flt.matches(r["owner"], r["department"])])

    @app.get("/customers/<int:customer_id>")
    @authz.require("customer", "read")
    def read(customer_id: int) -> ResponseReturnValue:
        row = authz.authorize("read", ROWS.get(customer_id), to_record)
        return jsonify(row | {"route": authz.context().route})

    @app.put("/customers/<int:customer_id>")
    @authz.require("customer", "update")
    def update(customer_id: int) -> ResponseReturnValue:
        return jsonify(authz.authorize("update", ROWS.get(customer_id), to_record))

    @app.delete("/customers/<int:customer_id>")
    @authz.require("customer", "delete")
    def delete(customer_id: int) -> ResponseReturnValue:  # pragma: no cover - nobody but admins
        return jsonify({"deleted": customer_id})

    @app.get("/records/<int:customer_id>")
    def raw_record(customer_id: int) -> ResponseReturnValue:
        return jsonify(authz.authorize("read", to_record(ROWS[customer_id]))._asdict())

    @app.get("/bad")
    def bad() -> ResponseReturnValue:
        return jsonify(authz.authorize("read", {"not": "a record"}))

    return app, authz


def as_(client: FlaskClient, session: str) -> FlaskClient:
    client.set_cookie("session", session)
    return client


def test_allowed_denied_and_parameterised(sample: Authorizer, decisions: DecisionRecords) -> None:
    app, _ = build(sample)
    client = app.test_client()
    response = as_(client, "s-rep").get("/customers/1")
    assert response.status_code == 200
    assert response.get_json()["route"] == "/customers/<int:customer_id>"
    denied = as_(client, "s-rep").put("/customers/3")
    assert denied.status_code == 403
    assert denied.content_type == "application/problem+json"
    assert denied.get_json()["detail"] == "you may not update this customer"
    assert as_(client, "s-rep").delete("/customers/1").status_code == 403
    assert as_(client, "s-rep").get("/customers/99").status_code == 404
    logged = [(d["kind"], d["route"], d["record_id"], d["allowed"]) for d in decisions.decisions[:2]]
    assert logged == [("route", "/customers/<int:customer_id>", None, True),
                      ("record", "/customers/<int:customer_id>", "1", True)]


def test_list_filtering(sample: Authorizer) -> None:
    client = build(sample)[0].test_client()
    assert as_(client, "s-rep").get("/customers").get_json() == [1]
    assert as_(client, "s-lead").get("/customers").get_json() == [1, 3]
    assert as_(client, "s-admin").get("/customers").get_json() == [1, 3, 5]


def test_unauthenticated_unknown_route_and_preflight(sample: Authorizer) -> None:
    client = build(sample)[0].test_client()
    response = client.get("/customers", headers={"X-User": "alice"})  # a header is no identity
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="salesauthz"'
    assert as_(client, "s-rep").get("/nowhere").status_code == 404
    preflight = client.options("/customers", headers={"Origin": "https://x",
                                                      "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200  # Flask answers OPTIONS itself; nothing demanded an identity


def test_hidden_records_and_plain_records(sample: Authorizer) -> None:
    client = build(sample, hide_denied=True)[0].test_client()
    assert as_(client, "s-rep").put("/customers/3").status_code == 404
    assert as_(client, "s-rep").get("/records/1").get_json()["owner"] == "rep_e1a"
    with pytest.raises(TypeError, match="needs a Record"):
        as_(client, "s-admin").get("/bad")


def test_decorator_lets_a_preflight_reach_the_view(sample: Authorizer) -> None:
    app, authz = build(sample)

    @app.route("/cors", methods=["OPTIONS"], provide_automatic_options=False)
    @authz.require("customer", "read")
    def cors() -> ResponseReturnValue:
        return "preflight ok"

    client = app.test_client()
    headers = {"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    assert client.options("/cors", headers=headers).text == "preflight ok"
    assert client.options("/cors").status_code == 401


def test_flask_user_shapes(sample: Authorizer, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Flask(__name__)
    info = RequestInfo("GET", "/", "h", {})

    class WithAccount:
        account = "lead_e1"
        domain = "acme"

    class LoginUser:
        is_authenticated = True

        def get_id(self) -> str:
            return "alice"

    class Nameless:
        pass

    with app.test_request_context():
        assert flask_user(info) is None
        for user, expected in [("rep_e1a", Identity("rep_e1a")), ("", None), (False, None),
                               (WithAccount(), Identity("lead_e1", "acme")),
                               (LoginUser(), Identity("alice")), (Nameless(), None)]:
            g.user = user
            assert flask_user(info) == expected, user
        # Flask-Login's current_user wins when someone is logged in through it.
        monkeypatch.setitem(sys.modules, "flask_login", types.SimpleNamespace(current_user=LoginUser()))
        g.user = "rep_e1a"
        assert flask_user(info) == Identity("alice")


def test_async_resolvers_are_refused(sample: Authorizer) -> None:
    async def resolver(info: RequestInfo) -> Identity:  # pragma: no cover - never awaited
        return Identity("alice", "acme")

    app = Flask(__name__)
    app.testing = True
    authz = FlaskAuthz(app, guard=Guard(sample, identity=resolver))

    @app.get("/")
    @authz.require("customer", "read")
    def index() -> ResponseReturnValue:  # pragma: no cover - refused before
        return "no"

    with pytest.raises(TypeError, match="synchronous identity resolver"):
        app.test_client().get("/")


# -- plain WSGI middleware -----------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    context = context_of(environ)
    if environ["PATH_INFO"] == "/explode":
        assert context is not None
        context.authorize("read", Record("customer", owner="rep_w1"))
    if environ["PATH_INFO"] == "/late":
        start_response("200 OK", [])
        raise ForbiddenError("too late to answer 403")
    start_response("200 OK", [("Content-Type", "text/plain")])
    text = f"{context.account} {context.route}" if context is not None else "public"
    return [text.encode()]


def test_wsgi_middleware(sample: Authorizer, tokens: HS256Tokens) -> None:
    app = Flask(__name__)
    guard = Guard(sample, identity=tokens)
    app.wsgi_app = WSGIAuthzMiddleware(wsgi_app, guard, rules={  # type: ignore[method-assign]
        "GET /customers/{id}": ("customer", "read"),
        "DELETE /customers/{id}": ("customer", "delete"),
        "GET /explode": ("customer", "read"),
        "GET /late": ("customer", "read"),
    }, public=["/health"])
    client = app.test_client()
    rep = bearer(tokens, "rep_e1a")
    assert client.get("/customers/7", headers=rep).text == "rep_e1a /customers/{id}"
    assert client.delete("/customers/7", headers=rep).status_code == 403
    assert client.get("/customers/7").status_code == 401
    assert client.get("/health").text == "public"
    assert client.get("/unlisted", headers=rep).status_code == 403
    exploded = client.get("/explode", headers=rep)
    assert exploded.status_code == 403
    assert exploded.get_json()["instance"] == "/explode"
    with pytest.raises(ForbiddenError, match="too late"):
        client.get("/late", headers=rep)
    preflight = client.options("/customers/7", headers={"Origin": "https://x",
                                                        "Access-Control-Request-Method": "GET",
                                                        "Content-Type": "text/plain"})
    assert preflight.text == "public"


def test_wsgi_unmatched_pass_and_validation(sample: Authorizer, tokens: HS256Tokens) -> None:
    app = Flask(__name__)
    app.wsgi_app = WSGIAuthzMiddleware(wsgi_app, Guard(sample, identity=tokens),  # type: ignore[method-assign]
                                       unmatched="pass")
    assert app.test_client().get("/anything", headers=bearer(tokens, "cs_1")).text == "cs_1 None"
    with pytest.raises(ValueError, match="unmatched"):
        WSGIAuthzMiddleware(wsgi_app, Guard(sample, identity=tokens), unmatched="no")  # type: ignore[arg-type]

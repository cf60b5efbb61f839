"""FastAPI dependencies: require, record, scope_filter, with and without the middleware."""

# No ``from __future__ import annotations``: FastAPI evaluates the routes' annotations, which
# refer to the local ``web``.

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI

from salesauthz import Authorizer, Record, ScopeFilter
from salesauthz.middleware import Guard, HS256Tokens, RequestAuthz, domain_from_path
from salesauthz.middleware.asgi import AuthzMiddleware
from salesauthz.middleware.fastapi import FastAPIAuthz

from ._clients import TestClient
from .conftest import DecisionRecords, bearer

ROWS = {
    1: {"id": 1, "owner": "rep_e1a", "department": "east-1"},
    3: {"id": 3, "owner": "rep_e1b", "department": "east-1"},
    5: {"id": 5, "owner": "rep_w1", "department": "west-1"},
}


def load_row(row_id: int) -> dict[str, object] | None:
    return ROWS.get(row_id)


def row_record(row: dict[str, object]) -> Record:
    return Record("customer", owner=str(row["owner"]), department=str(row["department"]), id=str(row["id"]))


def build(sample: Authorizer, tokens: HS256Tokens, *, middleware: bool = False, **options: object) -> FastAPI:
    guard = Guard(sample, identity=tokens, domain=domain_from_path("tenant"), **options)  # type: ignore[arg-type]
    web = FastAPIAuthz(guard)
    app = FastAPI()
    web.install(app)

    @app.get("/{tenant}/customers")
    def listing(flt: Annotated[ScopeFilter, Depends(web.scope_filter("customer"))]) -> list[int]:
        return [k for k, r in ROWS.items() if flt.matches(str(r["owner"]), str(r["department"]))]

    @app.get("/{tenant}/customers/{row_id}")
    def read(row: Annotated[dict[str, object], Depends(web.record("read", load_row, row_record))]
             ) -> dict[str, object]:
        return row

    @app.delete("/{tenant}/customers/{row_id}", dependencies=[Depends(web.require("customer", "delete"))])
    def delete(row_id: int) -> dict[str, int]:
        return {"deleted": row_id}

    @app.get("/{tenant}/me")
    def me(context: Annotated[RequestAuthz, Depends(web.context)]) -> dict[str, str | None]:
        return {"account": context.account, "domain": context.domain, "route": context.route}

    @app.get("/{tenant}/unprotected")
    def unprotected() -> str:
        return "open"

    if middleware:
        app.add_middleware(AuthzMiddleware, guard=guard, rules={"GET /{tenant}/me": ("customer", "read")})
    return app


@pytest.fixture
def client(sample: Authorizer, tokens: HS256Tokens) -> TestClient:
    return TestClient(build(sample, tokens))


def test_allowed_and_record_level_deny(client: TestClient, tokens: HS256Tokens) -> None:
    rep = bearer(tokens, "rep_e1a")
    assert client.get("/acme/customers/1", headers=rep).json()["owner"] == "rep_e1a"
    denied = client.get("/acme/customers/3", headers=rep)
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["detail"] == "you may not read this customer"
    assert "reason" not in denied.json()
    assert client.get("/acme/customers/99", headers=rep).status_code == 404


def test_route_level_requirement(client: TestClient, tokens: HS256Tokens) -> None:
    assert client.delete("/acme/customers/1", headers=bearer(tokens, "rep_e1a")).status_code == 403
    assert client.delete("/acme/customers/1", headers=bearer(tokens, "alice")).json() == {"deleted": 1}


def test_list_filtering(client: TestClient, tokens: HS256Tokens) -> None:
    assert client.get("/acme/customers", headers=bearer(tokens, "rep_e1a")).json() == [1]
    assert client.get("/acme/customers", headers=bearer(tokens, "lead_e1")).json() == [1, 3]
    assert client.get("/acme/customers", headers=bearer(tokens, "alice")).json() == [1, 3, 5]
    assert client.get("/acme/customers", headers=bearer(tokens, "ops_1")).json() == [1, 3, 5]
    assert client.get("/acme/customers", headers=bearer(tokens, "gone_1")).json() == []


def test_unauthenticated_and_bad_tokens(client: TestClient) -> None:
    response = client.get("/acme/customers")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="salesauthz"'
    forged = client.get("/acme/customers", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]


def test_domain_from_path_must_match_the_token(client: TestClient, tokens: HS256Tokens) -> None:
    assert client.get("/globex/customers", headers=bearer(tokens, "rep_e1a")).status_code == 403
    assert client.get("/globex/customers", headers=bearer(tokens, "g_rep", "globex")).json() == []


def test_context_dependency_knows_the_route_template(client: TestClient, tokens: HS256Tokens) -> None:
    assert client.get("/acme/me", headers=bearer(tokens, "cs_1")).json() == {
        "account": "cs_1", "domain": "acme", "route": "/{tenant}/me"}


def test_hidden_records_and_debug(sample: Authorizer, tokens: HS256Tokens) -> None:
    hidden = TestClient(build(sample, tokens, hide_denied=True))
    assert hidden.get("/acme/customers/3", headers=bearer(tokens, "rep_e1a")).status_code == 404
    debug = TestClient(build(sample, tokens, debug=True))
    body = debug.get("/acme/customers/3", headers=bearer(tokens, "rep_e1a")).json()
    assert body["rules"] == ["p, junior_rep, acme, customer, read, own"]


def test_with_the_middleware(sample: Authorizer, tokens: HS256Tokens, decisions: DecisionRecords) -> None:
    client = TestClient(build(sample, tokens, middleware=True))
    rep = bearer(tokens, "rep_e1a")
    # Routes using salesauthz dependencies count as protected; others fail closed.
    assert client.get("/acme/customers/1", headers=rep).status_code == 200
    assert client.get("/acme/unprotected", headers=rep).status_code == 403
    assert client.get("/acme/me", headers=rep).json()["route"] == "/{tenant}/me"
    assert client.get("/acme/me", headers=bearer(tokens, "frozen_1")).status_code == 403
    assert client.get("/nowhere/at/all", headers=rep).status_code == 404
    routes = {(d["route"], d["kind"]) for d in decisions.decisions}
    assert ("/{tenant}/customers/{row_id}", "record") in routes
    assert ("/{tenant}/me", "route") in routes


def test_included_routers_are_matched_by_their_full_template(
        sample: Authorizer, tokens: HS256Tokens, decisions: DecisionRecords) -> None:
    from fastapi import APIRouter

    guard = Guard(sample, identity=tokens)
    web = FastAPIAuthz(guard)
    app = FastAPI()
    web.install(app)
    customers = APIRouter(prefix="/api")
    orders = APIRouter()
    guarded = APIRouter(dependencies=[Depends(web.require("order", "approve"))])

    @customers.get("/customers/{customer_id}")
    def customer(customer_id: int) -> int:
        return customer_id

    @orders.get("/orders/{order_id}")
    def order(order_id: int) -> int:
        return order_id

    @orders.get("/orders/{order_id}/open")
    def order_open(order_id: int) -> int:
        return order_id

    @guarded.post("/orders/{order_id}/approve")
    def approve(order_id: int) -> int:
        return order_id

    app.include_router(customers)
    app.include_router(orders, prefix="/v2")
    app.include_router(guarded, prefix="/v2")
    app.add_middleware(AuthzMiddleware, guard=guard, rules={
        "GET /api/customers/{customer_id}": ("customer", "read"),
        "GET /v2/orders/{order_id}": ("order", "read"),
    })
    client = TestClient(app)
    rep, cs, manager = bearer(tokens, "rep_e1a"), bearer(tokens, "cs_1"), bearer(tokens, "mgr_east")
    assert client.get("/api/customers/4", headers=rep).json() == 4
    assert client.get("/v2/orders/4", headers=rep).json() == 4
    assert client.get("/v2/orders/4", headers=cs).status_code == 403  # no order:read
    assert client.get("/v2/orders/4/open", headers=rep).status_code == 403  # no rule: fail closed
    assert client.post("/v2/orders/4/approve", headers=manager).json() == 4  # router dependency
    assert client.post("/v2/orders/4/approve", headers=rep).status_code == 403
    assert client.get("/v2/nothing", headers=rep).status_code == 404
    routes = [d["route"] for d in decisions.decisions if d["kind"] == "route"]
    assert routes[:2] == ["/api/customers/{customer_id}", "/v2/orders/{order_id}"]

"""The example CRM on a real uvicorn server (127.0.0.1, free port), driven with httpx as
different accounts of the sample organisation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from examples.crm_api import create_app
from examples.crm_api.__main__ import main
from examples.crm_api.serving import running

from salesauthz.middleware import DECISION_LOGGER, HS256Tokens

SECRET = "example-crm-test-secret-0123456789-abcdefghijkl"
ORIGIN = "http://localhost:5173"
TOKENS = HS256Tokens(SECRET)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = create_app(secret=SECRET, cors_origins=[ORIGIN])
    with running(app) as url:
        yield url


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    found: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(dict(getattr(record, "decision")))  # noqa: B009 - set via extra=

    logger = logging.getLogger(DECISION_LOGGER)
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def as_(base_url: str, account: str | None, domain: str = "acme") -> httpx.Client:
    headers = {"Authorization": "Bearer " + TOKENS.mint(account, domain=domain)} if account else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=10.0)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()]


def test_lists_return_exactly_the_permitted_rows(base_url: str) -> None:
    expected = {
        "rep_e1a": [1, 2],              # own
        "lead_e1": [1, 2, 3, 6],        # team east-1
        "mgr_east": [1, 2, 3, 4, 6, 7],  # department tree east
        "rep_w1": [5],
        "analyst_1": [4, 5],            # custom: east-2 and west
        "intern_e1": [1, 2, 3, 6],      # team east-1, capped by mgr_east
        "alice": [1, 2, 3, 4, 5, 6, 7, 8],
        "cs_1": [1, 2, 3, 4, 5, 6, 7, 8],
    }
    for account, rows in expected.items():
        with as_(base_url, account) as client:
            assert ids(client.get("/customers")) == rows, account
    with as_(base_url, "g_rep", "globex") as client:
        assert ids(client.get("/customers")) == [9]  # nothing crosses domains
    with as_(base_url, "ops_1") as client:
        assert ids(client.get("/orders")) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_record_level_allow_and_hidden_deny(base_url: str, logged: list[dict[str, Any]]) -> None:
    with as_(base_url, "rep_e1a") as client:
        assert client.get("/customers/1").json()["name"] == "Northwind"
        hidden = client.get("/customers/3")
        assert hidden.status_code == 404  # the example hides records it denies
        assert hidden.headers["content-type"] == "application/problem+json"
        assert hidden.json() == {"type": "about:blank", "title": "Not Found", "status": 404,
                                 "detail": "no such record", "instance": "/customers/3"}
        assert client.get("/customers/9").status_code == 404  # globex's row
    records = [d for d in logged if d["kind"] == "record"]
    assert [(d["record_id"], d["allowed"]) for d in records] == [("1", True), ("3", False)]
    assert records[0]["rule"] == "p, junior_rep, acme, customer, read, own"
    assert records[0]["route"] == "/customers/{customer_id}"
    assert records[1]["rule"] is None
    assert {d["account"] for d in logged} == {"rep_e1a"}
    assert all(isinstance(d["latency_ns"], int) for d in logged)


def test_fields_are_redacted_by_field_rules(base_url: str) -> None:
    with as_(base_url, "rep_e1a") as client:  # junior rep, own customer: every field
        assert client.get("/customers/1").json() == {
            "id": 1, "name": "Northwind", "owner": "rep_e1a", "department": "east-1",
            "phone": "555-0101", "contract_value": 1000}
    with as_(base_url, "lead_e1") as client:  # senior rep: phone of its own customers only
        assert "phone" not in client.get("/customers/1").json()
        assert client.get("/customers/6").json()["phone"] == "555-0106"
    with as_(base_url, "asst_e1") as client:  # assistant: no phone, no contract value
        rows = client.get("/customers").json()
        assert [r["id"] for r in rows] == [1, 2, 3, 6]
        assert all("phone" not in r and "contract_value" not in r for r in rows)


def test_readonly_fields_cannot_be_written(base_url: str) -> None:
    with as_(base_url, "rep_e1a") as client:
        denied = client.put("/customers/2", json={"contract_value": 1})
        assert denied.status_code == 403
        assert "contract_value" in denied.json()["detail"]
        assert client.put("/customers/2", json={"phone": "555-9999"}).json()["phone"] == "555-9999"
    with as_(base_url, "mgr_east") as client:
        assert client.put("/customers/2", json={"contract_value": 5}).json()["contract_value"] == 5


def test_route_level_deny_is_403(base_url: str) -> None:
    with as_(base_url, "rep_e1a") as client:
        response = client.delete("/customers/1")
        assert response.status_code == 403
        assert response.json()["detail"] == "you may not delete customer records"
    with as_(base_url, "cs_1") as client:
        assert client.post("/orders/1/approve").status_code == 403


def test_unauthenticated_is_401(base_url: str) -> None:
    with as_(base_url, None) as client:
        response = client.get("/customers")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="salesauthz"'
        forged = HS256Tokens("a-different-secret-that-is-long-enough-000").mint("alice", domain="acme")
        assert client.get("/customers", headers={"Authorization": "Bearer " + forged}).status_code == 401
        assert client.get("/customers", headers={"X-User": "alice"}).status_code == 401
        assert client.get("/health").json() == {"status": "ok"}


def test_unknown_route_and_preflight(base_url: str) -> None:
    with as_(base_url, "rep_e1a") as client:
        assert client.get("/no/such/route").status_code == 404
    with as_(base_url, None) as client:
        preflight = client.options("/customers", headers={"Origin": ORIGIN,
                                                          "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN


def test_writes_respect_scopes(base_url: str) -> None:
    with as_(base_url, "lead_e1") as client:
        assert client.put("/customers/3", json={"name": "Fabrikam Ltd"}).json()["name"] == "Fabrikam Ltd"
        assert client.put("/customers/5", json={"name": "x"}).status_code == 404  # west: hidden
        created = client.post("/customers", json={"name": "New Co"})
        assert created.status_code == 201
        assert created.json()["owner"] == "lead_e1"
        order = client.post("/orders", json={"customer_id": 3, "amount": 50})
        assert order.status_code == 201
        assert client.post("/orders", json={"customer_id": 5, "amount": 50}).status_code == 404
        assert client.get(f"/orders/{order.json()['id']}").json()["amount"] == 50
    with as_(base_url, "mgr_east") as client:
        assert client.post("/orders/3/approve").json()["status"] == "approved"
        assert client.post("/orders/5/approve").status_code == 404
    with as_(base_url, "asst_e1") as client:
        assert client.post("/customers/3/notes", json={"text": "called"}).status_code == 201
        assert client.post("/customers/5/notes", json={"text": "called"}).status_code == 404
        assert [n["text"] for n in client.get("/customers/3/notes").json()] == [
            "first call with Fabrikam", "called"]
    with as_(base_url, "alice") as client:
        assert client.delete("/customers/8").status_code == 204
        assert client.get("/customers/8").status_code == 404


def test_baseline_without_enforcement_still_authenticates() -> None:
    app = create_app(secret=SECRET, enforce=False)
    with running(app) as url:
        with as_(url, "rep_e1a") as client:
            assert ids(client.get("/customers")) == [1, 2, 3, 4, 5, 6, 7, 8]
            assert client.get("/customers/99").status_code == 404
        with as_(url, None) as client:
            assert client.get("/customers").status_code == 401


def test_token_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CRM_TOKEN_SECRET", raising=False)
    assert main(["token", "alice"]) == 2
    assert "CRM_TOKEN_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("CRM_TOKEN_SECRET", SECRET)
    assert main(["token", "rep_e1a", "--domain", "acme"]) == 0
    claims = TOKENS.verify(capsys.readouterr().out.strip())
    assert (claims["sub"], claims["tenant"]) == ("rep_e1a", "acme")


def test_several_workers_need_shared_configuration(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRM_TOKEN_SECRET", SECRET)
    for name in ("CRM_DATABASE_URL", "CRM_STORE_URL", "CRM_WATCH_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_STORE_URL", "postgresql://db/crm")
    assert main(["serve", "--workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "CRM_DATABASE_URL, CRM_WATCH_URL" in error
    assert "CRM_STORE_URL" not in error


def test_administration_routes(base_url: str) -> None:
    with as_(base_url, "rep_e1a") as client:  # a rep manages nobody
        assert client.post("/accounts/rep_e1b/freeze").status_code == 403
    with as_(base_url, "alice") as client:
        assert client.put("/accounts/rep_w1/roles/no_such_role").status_code == 404
        assigned = client.put("/accounts/rep_w1/roles/senior_rep")
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["operation"] == "assign_role"
        assert client.delete("/accounts/rep_w1/roles/senior_rep").json()["operation"] == "unassign_role"


def shape(response: httpx.Response) -> object:
    """What a response says about access: the ids listed or read, or the problem's title."""
    body = response.json()
    if isinstance(body, list):
        return [row["id"] for row in body]
    return body.get("id", body.get("title"))


def test_without_the_route_middleware_the_dependencies_still_authorize() -> None:
    """The benchmark's comparison app (bench_web's middleware cost): the same answers as the
    app with it, both fresh."""
    with running(create_app(secret=SECRET, route_middleware=False)) as url, \
            running(create_app(secret=SECRET)) as base_url:
        for account, path in (("rep_e1a", "/customers"), ("mgr_east", "/customers"), ("alice", "/orders"),
                              ("rep_e1a", "/customers/1"), ("rep_e1a", "/customers/5"), (None, "/customers"),
                              ("mgr_east", "/orders/3"), ("rep_w1", "/orders/3")):
            with as_(url, account) as plain, as_(base_url, account) as guarded:
                got, expected = plain.get(path), guarded.get(path)
                answers = (got.status_code, shape(got)), (expected.status_code, shape(expected))
                assert answers[0] == answers[1], (account, path)
        with as_(url, "rep_e1a") as client:
            assert client.get("/customers/5").status_code == 404  # denied, hidden

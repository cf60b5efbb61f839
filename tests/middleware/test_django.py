"""Django: middleware, @require, the has_perm backend and the QuerySet helper, with Django's
test client. Settings are overridden per test; the project lives in ``djangoapp``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings

from salesauthz import Record
from salesauthz.middleware import Guard
from salesauthz.middleware import django as dj

from .conftest import DecisionRecords
from .djangoapp.app import AUTHORIZER, GUARD, AppUser
from .djangoapp.models import Customer

ROWS = [(1, "rep_e1a", "east-1"), (3, "rep_e1b", "east-1"), (5, "rep_w1", "west-1"),
        (7, "g_rep", "sales")]

SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": "tests.middleware.djangoapp.app",
    "MIDDLEWARE": ["tests.middleware.djangoapp.app.login_middleware",
                   "salesauthz.middleware.django.SalesAuthzMiddleware"],
    "AUTHENTICATION_BACKENDS": ["salesauthz.middleware.django.SalesAuthzBackend"],
    "ALLOWED_HOSTS": ["testserver"],
    "SALESAUTHZ_GUARD": "tests.middleware.djangoapp.app.GUARD",
    "SALESAUTHZ_RULES": {
        "GET /customers/<int:pk>/delete": ("customer", "delete"),
        "/health": None,
    },
    "SALESAUTHZ_DEFAULT_DOMAIN": "acme",
}


@pytest.fixture(scope="module")
def table() -> Iterator[None]:
    with connection.schema_editor() as editor:
        editor.create_model(Customer)
    for pk, owner, department in ROWS:
        domain = "globex" if owner.startswith("g_") else "acme"
        Customer.objects.create(pk=pk, domain=domain, name=f"c{pk}", owner=owner, department=department)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(Customer)


@pytest.fixture
def configured(table: None) -> Iterator[None]:
    with override_settings(**SETTINGS):
        yield


def client(session: str | None = None) -> Client:
    browser = Client()
    if session is not None:
        browser.cookies["session"] = session
    return browser


@pytest.mark.usefixtures("configured")
def test_allowed_parameterised_and_record_level_deny(decisions: DecisionRecords) -> None:
    response = client("s-rep").get("/customers/1")
    assert response.status_code == 200
    assert response.json() == {"id": 1, "name": "c1", "owner": "rep_e1a", "route": "/customers/<int:pk>"}
    denied = client("s-rep").get("/customers/3")
    assert denied.status_code == 403
    assert denied["Content-Type"] == "application/problem+json"
    assert denied.json()["detail"] == "you may not read this customer"
    assert client("s-rep").get("/customers/7").status_code == 404  # another tenant's row
    logged = [(d["kind"], d["route"], d["record_id"], d["allowed"]) for d in decisions.decisions]
    assert ("record", "/customers/<int:pk>", "1", True) in logged
    assert ("record", "/customers/<int:pk>", "3", False) in logged


@pytest.mark.usefixtures("configured")
def test_list_filtering_with_scope_q() -> None:
    assert client("s-rep").get("/customers").json() == [1]
    assert client("s-lead").get("/customers").json() == [1, 3]
    assert client("s-admin").get("/customers").json() == [1, 3, 5]
    assert client("s-gone").get("/customers").status_code == 403  # deactivated: nothing at all


@pytest.mark.usefixtures("configured")
def test_unauthenticated_unknown_public_and_rules() -> None:
    response = client().get("/customers", HTTP_X_USER="alice")  # a header is no identity
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="salesauthz"'
    assert client("s-rep").get("/nowhere").status_code == 404
    assert client().get("/health").content == b"ok"
    assert client("s-rep").get("/customers/1/delete").status_code == 403
    assert client("s-admin").get("/customers/1/delete").json() == {"deleted": 1}
    # With rules configured, a view neither listed nor decorated fails closed.
    assert client("s-admin").get("/unguarded").status_code == 403


@pytest.mark.usefixtures("configured")
def test_preflight_passes() -> None:
    headers = {"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    assert client().options("/preflight", headers=headers).content == b"reached"
    assert client().options("/unguarded", headers=headers).content == b"unguarded"
    assert client().options("/preflight").status_code == 401


@pytest.mark.usefixtures("table")
def test_without_rules_unlisted_views_pass() -> None:
    with override_settings(**(SETTINGS | {"SALESAUTHZ_RULES": None})):
        assert client().get("/unguarded").content == b"unguarded"
    with override_settings(**(SETTINGS | {"SALESAUTHZ_UNMATCHED": "sometimes"})), \
            pytest.raises(ValueError, match="SALESAUTHZ_UNMATCHED"):
        client().get("/unguarded")


@pytest.mark.usefixtures("configured")
def test_has_perm_through_the_backend(decisions: DecisionRecords) -> None:
    backend = dj.SalesAuthzBackend()
    lead = AppUser("lead_e1")
    row = Customer.objects.get(pk=3)
    assert backend.has_perm(lead, "customer:update", row)
    assert backend.has_perm(lead, "customer:update", Record("customer", owner="rep_e1b"))
    assert not backend.has_perm(lead, "customer:update", Customer.objects.get(pk=5))
    assert backend.has_perm(lead, "customer:read")
    assert not backend.has_perm(lead, "customer:delete")
    assert not backend.has_perm(lead, "order:read", row)  # the object is not an order
    assert not backend.has_perm(lead, "auth.add_user")  # not ours: other backends decide
    assert not backend.has_perm(AppUser("lead_e1", is_active=False), "customer:read")
    with pytest.raises(TypeError, match="cannot make a salesauthz Record"):
        backend.has_perm(lead, "customer:read", {"not": "a model"})
    assert backend.authenticate(None, username="x") is None  # type: ignore[func-returns-value]
    assert backend.get_user(1) is None  # type: ignore[func-returns-value]
    assert decisions.decisions[0]["route"] == "has_perm"
    with override_settings(SALESAUTHZ_DEFAULT_DOMAIN=None):
        assert not backend.has_perm(lead, "customer:read")


@pytest.mark.usefixtures("configured")
def test_real_django_user_has_perm() -> None:
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"]):
        from django.contrib.auth.models import AnonymousUser, User

        assert User(username="lead_e1").has_perm("customer:update", Customer.objects.get(pk=3))
        assert not User(username="rep_e1a").has_perm("customer:update", Customer.objects.get(pk=3))
        assert not AnonymousUser().has_perm("customer:read")


def test_guard_configuration(table: None) -> None:
    with override_settings(SALESAUTHZ_GUARD=None):
        with pytest.raises(RuntimeError, match="SALESAUTHZ_GUARD"):
            dj.get_guard()
        other = Guard(AUTHORIZER, identity=dj.django_user)
        dj.configure(other)
        try:
            assert dj.get_guard() is other
        finally:
            dj.configure(None)
    with override_settings(SALESAUTHZ_GUARD="tests.middleware.djangoapp.app.make_guard"):
        assert dj.get_guard() is GUARD
    with override_settings(SALESAUTHZ_GUARD="tests.middleware.djangoapp.app.SESSIONS"), \
            pytest.raises(TypeError, match="not a Guard"):
        dj.get_guard()


def test_identity_of_users() -> None:
    class Plain:
        is_authenticated = True
        username = "alice"
        domain = "acme"

    class Nameless:
        is_authenticated = True
        username = ""

    assert dj.identity_of_user(Plain()) is not None
    assert dj.identity_of_user(Plain()).domain == "acme"  # type: ignore[union-attr]
    assert dj.identity_of_user(Nameless()) is None
    assert dj.identity_of_user(None) is None

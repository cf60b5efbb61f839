"""``Admin.set_attribute``: account attributes (what ``account.<name>`` conditions compare with)
changed at run time — authorized, judged by the escalation rule, validated, audited."""

from __future__ import annotations

from typing import Any

import pytest

from salesauthz import Authorizer, EscalationError, ForbiddenError, Record
from salesauthz.models import DomainDocument, compile_document

DOCUMENT: dict[str, Any] = {
    "domain": "acme",
    "resources": {
        "customer": {"actions": ["read"], "attributes": {"region": "str"}},
        "ticket": {"actions": ["read"], "attributes": {"customer_id": "str"}},
    },
    "departments": {"sales": {}},
    "roles": {
        "admin": {"permissions": [{"scope": "all", "account": ["manage"], "customer": ["read"],
                                   "ticket": ["read"]}]},
        "territory_manager": {"permissions": [
            {"scope": "all", "account": ["manage"]},
            {"scope": "all", "where": {"region": {"in": "account.territories"}},
             "customer": ["read"]}]},
        "territory_rep": {"permissions": [
            {"scope": "all", "where": {"region": {"in": "account.territories"}},
             "customer": ["read"]}]},
        "portal": {"permissions": [
            {"scope": "all", "where": {"customer_id": "account.customer_id"}, "ticket": ["read"]}]},
    },
    "accounts": {
        "boss": {"department": "sales", "roles": ["admin"]},
        "mgr": {"department": "sales", "roles": ["territory_manager"],
                "attributes": {"territories": ["East"]}},
        "rep": {"department": "sales", "roles": ["territory_rep"],
                "attributes": {"territories": ["East"]}},
        "guest": {"department": "sales", "roles": ["portal"]},
    },
}


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


def customer(region: str) -> Record:
    return Record("customer", owner="x", attributes={"region": region})


def test_setting_an_attribute_changes_what_conditions_reach_and_is_audited(authz: Authorizer) -> None:
    assert not authz.check("rep", "read", customer("West"), domain="acme")
    record = authz.admin("boss", domain="acme").set_attribute("rep", "territories", ["East", "West"])
    assert authz.check("rep", "read", customer("West"), domain="acme")
    assert authz.check("rep", "read", customer("East"), domain="acme")
    assert record.operation == "set_attribute"
    assert record.actor == "boss"
    assert record.target == "rep"
    assert record.detail == "territories: ['East'] -> ['East', 'West']"
    assert record.removed == (("p9", "rep", "acme", "territories", '[["East"]]'),)
    assert record.added == (("p9", "rep", "acme", "territories", '[["East","West"]]'),)
    assert [r for r in authz.rules("acme") if r[0] == "p9" and r[1] == "rep"] == list(record.added)
    assert list(authz.audit.records())[-1] == record


def test_a_portal_user_gets_its_customer(authz: Authorizer) -> None:
    ticket = Record("ticket", owner="x", attributes={"customer_id": "c-17"})
    assert not authz.check("guest", "read", ticket, domain="acme")
    authz.admin("boss", domain="acme").set_attribute("guest", "customer_id", "c-17")
    assert authz.check("guest", "read", ticket, domain="acme")
    assert not authz.check("guest", "read", Record("ticket", owner="x",
                                                   attributes={"customer_id": "c-18"}), domain="acme")


def test_removing_an_attribute_narrows_to_nothing(authz: Authorizer) -> None:
    record = authz.admin("mgr", domain="acme").set_attribute("rep", "territories", None)
    assert record.added == ()
    assert record.detail == "territories: ['East'] -> unset"
    assert not authz.check("rep", "read", customer("East"), domain="acme")


def test_a_conditioned_actor_cannot_widen_through_an_attribute(authz: Authorizer) -> None:
    before = authz.rules()
    audit = list(authz.audit.records())
    with pytest.raises(EscalationError, match=r"customer:read@all"):
        authz.admin("mgr", domain="acme").set_attribute("rep", "territories", ["West"])
    assert authz.rules() == before
    assert list(authz.audit.records()) == audit
    assert not authz.check("rep", "read", customer("West"), domain="acme")


def test_the_actor_must_manage_the_account(authz: Authorizer) -> None:
    with pytest.raises(EscalationError, match="may not manage account guest"):
        authz.admin("rep", domain="acme").set_attribute("guest", "customer_id", "c-1")


def test_not_on_oneself(authz: Authorizer) -> None:
    with pytest.raises(EscalationError, match="for itself"):
        authz.admin("mgr", domain="acme").set_attribute("mgr", "territories", ["East", "West"])


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("territories", [1, 2], "1 can never match customer.region (str)"),
    ("territories", [["East"]], "a list item ['East']"),
    ("territories", {"East": 1}, "is not text, a number, a boolean"),
    ("customer_id", ["c-1"], "can never match ticket.customer_id (str)"),
    ("", "x", "invalid attribute name"),
])
def test_values_are_validated(authz: Authorizer, name: str, value: object, fragment: str) -> None:
    before = authz.rules()
    with pytest.raises(ValueError, match="attribute") as caught:
        authz.admin("boss", domain="acme").set_attribute("rep", name, value)
    assert fragment in str(caught.value)
    assert authz.rules() == before


def test_setting_the_same_value_is_refused(authz: Authorizer) -> None:
    with pytest.raises(ForbiddenError, match="already"):
        authz.admin("boss", domain="acme").set_attribute("rep", "territories", ["East"])

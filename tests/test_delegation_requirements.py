"""A requirement narrows a right (issue 20): an actor whose export needs a second factor cannot
grant it without one, may grant it with the same requirement, and a role carrying it is judged
the same way."""

from __future__ import annotations

from typing import Any

import pytest

from salesauthz import Authorizer, EscalationError, Record
from salesauthz.conditions import Condition
from salesauthz.models import DomainDocument, compile_document
from salesauthz.scopes import Scope, ScopeKind

DOCUMENT: dict[str, Any] = {
    "domain": "acme",
    "resources": {"customer": ["read", "export"]},
    "departments": {"sales": {}},
    "roles": {
        "lead": {"permissions": [
            {"scope": "all", "account": ["manage"], "customer": ["read"]},
            {"scope": "all", "requires": {"mfa": True}, "customer": ["export"]}]},
        "exporter": {"permissions": [{"scope": "all", "customer": ["export"]}]},
        "strong_exporter": {"permissions": [
            {"scope": "all", "requires": {"mfa": True}, "customer": ["export"]}]},
    },
    "accounts": {"lead_1": {"department": "sales", "roles": ["lead"]},
                 "rep_1": {"department": "sales"}},
}
MFA = Condition.of(requires={"mfa": True})


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


def test_no_grant_without_the_requirement(authz: Authorizer) -> None:
    before = authz.rules()
    with pytest.raises(EscalationError, match="customer:export@all"):
        authz.admin("lead_1", domain="acme").grant("rep_1", "customer", ["export"], scope="all")
    with pytest.raises(EscalationError):
        authz.admin("lead_1", domain="acme").assign_role("rep_1", "exporter")
    assert authz.rules() == before


def test_the_same_requirement_may_be_handed_on(authz: Authorizer) -> None:
    admin = authz.admin("lead_1", domain="acme", context={"mfa": True})
    record = admin.grant("rep_1", "customer", ["export"], scope=Scope(ScopeKind.ALL, condition=MFA))
    assert record.assurance == 1
    customer = Record("customer", owner="x")
    assert not authz.check("rep_1", "export", customer, domain="acme")
    assert authz.check("rep_1", "export", customer, domain="acme", context={"mfa": True})
    authz.admin("lead_1", domain="acme").assign_role("rep_1", "strong_exporter")

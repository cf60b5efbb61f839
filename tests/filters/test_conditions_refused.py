"""List filters and conditions on record attributes: until the renderers know the attribute
columns, a filter that lets rows through only where a condition holds is refused with a clear
error — never rendered without the condition (rows check denies) nor dropped (rows it allows)."""

from __future__ import annotations

import pytest

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

DOCUMENT = {
    "domain": "acme",
    "resources": {"customer": {"actions": ["read", "export"],
                               "attributes": {"region": "str", "amount": "int"}}},
    "departments": {"sales": {}},
    "roles": {"territory_rep": {"permissions": [
        {"scope": "all", "where": {"region": {"in": "account.territories"}}, "customer": ["read"]},
        {"scope": "all", "requires": {"mfa": True}, "customer": ["export"]},
    ]}},
    "accounts": {"rep_e1": {"department": "sales", "roles": ["territory_rep"],
                            "attributes": {"territories": ["East"]}}},
}


def _authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


def test_a_conditioned_filter_is_refused_naming_the_condition() -> None:
    flt = _authz().scope_filter("rep_e1", "read", "customer", domain="acme")
    assert not flt.needs_shares  # a condition, not a share: no share table would help
    with pytest.raises(UsageError, match="conditions on record attributes"):
        sql_where(flt, owner="owner", department="department")


def test_requirements_are_settled_by_the_context_before_rendering() -> None:
    authz = _authz()
    strong = authz.scope_filter("rep_e1", "export", "customer", domain="acme", context={"mfa": True})
    weak = authz.scope_filter("rep_e1", "export", "customer", domain="acme", context={})
    assert strong.everything
    assert weak.nothing
    assert sql_where(weak, owner="owner", department="department")[0] == "(1 = 0)"

"""Field-level access on the sample organisation: visible, readonly, hidden, record-conditional."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, ForbiddenError
from salesauthz import _engine as engine
from salesauthz.scopes import parse_scope

from .conftest import examples
from .strategies import FIXED_NOW, Organisation, organisations


def customer(owner: str, **extra: Any) -> dict[str, Any]:
    return {"id": 7, "owner": owner, "name": "ACME Ltd", "phone": "+1 555", "email": "a@b.c",
            "contract_value": 1000, "notes": "", **extra}


def test_assistant_sees_no_contact_details(sample: Authorizer) -> None:
    shown = sample.redact("asst_e1", "customer", customer("rep_e1b"), domain="acme")
    assert set(shown) == {"id", "owner", "name", "notes"}


def test_rep_sees_everything_but_cannot_change_contract_value(sample: Authorizer) -> None:
    record = customer("rep_e1a")
    assert sample.redact("rep_e1a", "customer", record, domain="acme") == record
    assert "contract_value" not in sample.writable_fields("rep_e1a", "customer", record, domain="acme")
    assert "phone" in sample.writable_fields("rep_e1a", "customer", record, domain="acme")
    sample.check_write("rep_e1a", "customer", record, {"phone": "+1 556"}, domain="acme")
    with pytest.raises(ForbiddenError, match=r"contract_value \(readonly\)"):
        sample.check_write("rep_e1a", "customer", record, {"contract_value": 5}, domain="acme")


def test_senior_rep_phone_is_record_conditional(sample: Authorizer) -> None:
    own = sample.field_modes("lead_e1", "customer", customer("lead_e1"), domain="acme")
    team = sample.field_modes("lead_e1", "customer", customer("rep_e1b"), domain="acme")
    assert own["phone"] == "visible"
    assert team["phone"] == "hidden"
    assert "phone" not in sample.redact("lead_e1", "customer", customer("rep_e1b"), domain="acme")


def test_inherited_rule_is_widened_by_the_managers_own(sample: Authorizer) -> None:
    modes = sample.field_modes("mgr_east", "customer", customer("rep_e2"), domain="acme")
    assert modes["phone"] == "visible"
    assert modes["contract_value"] == "visible"
    sample.check_write("mgr_east", "customer", customer("rep_e2"), {"contract_value": 9},
                       domain="acme")


def test_sub_account_is_capped_by_parent_fields(sample: Authorizer) -> None:
    # intern_e1 is a sales_assistant (phone hidden) under mgr_east (phone visible): hidden.
    assert sample.field_modes("intern_e1", "customer", customer("intern_e1"),
                              domain="acme")["phone"] == "hidden"


def test_write_needs_update_on_the_record(sample: Authorizer) -> None:
    assert sample.writable_fields("rep_e1a", "customer", customer("rep_e1b"), domain="acme") == set()
    with pytest.raises(ForbiddenError, match="may not update"):
        sample.check_write("rep_e1a", "customer", customer("rep_e1b"), {"notes": "x"}, domain="acme")


def test_inactive_and_unknown(sample: Authorizer) -> None:
    assert sample.field_modes("frozen_1", "customer", customer("frozen_1"),
                              domain="acme")["phone"] == "hidden"
    assert sample.field_modes("ghost", "customer", customer("x"), domain="nowhere") == dict.fromkeys(
        customer("x"), "hidden")
    # Fields no rule mentions are visible.
    assert sample.field_modes("rep_e1a", "order", {"owner": "rep_e1a", "total": 3},
                              domain="acme")["total"] == "visible"
    # Without a field list, ruled fields are reported too.
    assert "contract_value" in sample.field_modes("rep_e1a", "customer", {"owner": "rep_e1a"},
                                                  domain="acme")


def test_unknown_field_or_type_in_rules_is_a_policy_error(tmp_path: Any) -> None:
    from salesauthz import PolicyError

    (tmp_path / "a.yaml").write_text(
        "domain: a\nresources: {customer: [read]}\nfields: {customer: [name]}\n"
        "roles:\n  r:\n    fields:\n      customer: {phone: hidden}\n      widget: {x: hidden}\n",
        encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        Authorizer.from_directory(tmp_path)
    codes = {(i.code, i.line) for i in caught.value.issues}
    assert codes == {("SA161", 7), ("SA160", 8)}


# -- property: field modes follow the documented rules on random organisations -----------------


RANK = {"visible": 0, "readonly": 1, "hidden": 2}


def reference_mode(authz: Authorizer, domain: str, account: str, owner: str | None,
                   department: str | None, field: str, depth: int = 0) -> int:
    """The documented rules, written out as plainly as possible."""
    index = authz._snapshot(domain)
    assert index is not None
    info = index.accounts.get(account)
    ruled = any(r.field == field and r.type == "customer"
                for rules in index.role_fields.values() for r in rules)
    if info is None or info.status != "active" or depth > 20:
        return RANK["hidden"] if ruled else RANK["visible"]
    votes = []
    live = [*info.roles, *(role for role, until in info.timed_roles if until > FIXED_NOW)]
    for role in {inherited for assigned in live for inherited, _ in index.role_paths.get(assigned, ())}:
        rules = [r for r in index.role_fields.get(role, ()) if r.type == "customer" and r.field == field]
        if rules:
            where = department or index.department_of(owner)
            applicable = [RANK[r.mode] for r in rules if r.scope is None or engine.scope_coverage(
                index, account, parse_scope(r.rule[6])).covers(owner, where)]
            votes.append(min(applicable, default=RANK["hidden"]))
    mine = min(votes, default=RANK["visible"])
    if info.parent is not None:
        mine = max(mine, reference_mode(authz, domain, info.parent, owner, department, field, depth + 1))
    return mine


@settings(max_examples=examples(60))
@given(data=st.data(), org=organisations(record_model=True))
def test_field_modes_follow_the_documented_rules(data: st.DataObject, org: Organisation) -> None:
    domain = org.domains[0]
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    accounts = org.accounts(domain)
    for _ in range(10):
        account = data.draw(st.sampled_from([*accounts, "ghost"]))
        owner = data.draw(st.sampled_from([*accounts, None]))
        department = data.draw(st.sampled_from([None, *org.departments(domain)]))
        record = {"owner": owner, "department": department, "phone": 1, "value": 2, "x,y": 3, "z": 4}
        modes = authz.field_modes(account, "customer", record, domain=domain,
                                  fields=["phone", "value", "x,y", "z"])
        for field, mode in modes.items():
            assert RANK[mode] == reference_mode(authz, domain, account, owner, department, field), (
                account, owner, department, field)

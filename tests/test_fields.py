"""Field-level access on the sample organisation: visible, readonly, hidden, record-conditional."""

from __future__ import annotations

from typing import Any

import pytest

from salesauthz import Authorizer, ForbiddenError


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

"""Conditions on record attributes and requirements on the request context, by example."""

from __future__ import annotations

from typing import Any

import pytest

from salesauthz import Authorizer, Record
from salesauthz.models import DomainDocument, compile_document, decompile_rules

NOW = 1_900_065_600.0  # 2030-03-18, a Monday, 12:00 UTC (20:00 in Shanghai)

DOCUMENT: dict[str, Any] = {
    "domain": "acme",
    "resources": {"customer": {"actions": ["read", "export", "claim"],
                               "attributes": {"region": "str", "amount": "int", "pool": "str"}}},
    "departments": {"sales": {}},
    "roles": {
        "territory_rep": {"permissions": [
            {"scope": "all", "where": {"region": {"in": "account.territories"}},
             "customer": ["read"]},
            {"scope": "all", "where": {"amount": {"le": 100000}}, "requires": {"mfa": True},
             "customer": ["export"]},
        ]},
        "pool_member": {"permissions": [
            {"scope": "all", "where": {"owner": None, "pool": "account.pool"},
             "customer": ["claim"]},
        ]},
        "office": {"permissions": [
            {"scope": "all", "requires": {"ip": ["10.0.0.0/8"], "hours": "Mon-Fri 08:00-20:00"},
             "customer": ["read"]},
        ]},
    },
    "accounts": {
        "rep": {"department": "sales", "roles": ["territory_rep", "pool_member"],
                "attributes": {"territories": ["East", "North"], "pool": "p1"}},
        "nobody": {"department": "sales", "roles": ["territory_rep"]},
        "clerk": {"department": "sales", "roles": ["office"]},
        "kid": {"department": "sales", "parent": "rep", "roles": ["territory_rep"],
                "attributes": {"territories": ["East", "West"]}},
    },
}


@pytest.fixture
def authz() -> Authorizer:
    rules = compile_document(DomainDocument.model_validate(DOCUMENT))
    return Authorizer.from_rules(rules, clock=lambda: NOW)


def east(amount: int = 5, **more: Any) -> Record:
    return Record("customer", owner="someone", attributes={"region": "East", "amount": amount,
                                                          **more})


def test_a_condition_compares_with_the_accounts_attributes(authz: Authorizer) -> None:
    assert authz.check("rep", "read", east(), domain="acme")
    assert not authz.check("rep", "read", Record("customer", owner="x", attributes={"region": "West"}),
                           domain="acme")
    assert not authz.check("nobody", "read", east(), domain="acme")  # no territories: nothing


def test_a_missing_attribute_is_a_deny(authz: Authorizer) -> None:
    assert not authz.check("rep", "read", Record("customer", owner="x"), domain="acme")
    assert not authz.check("rep", "read", Record("customer", owner="x", attributes={}),
                           domain="acme")


def test_comparisons_are_inclusive_where_asked(authz: Authorizer) -> None:
    strong = {"mfa": True}
    assert authz.check("rep", "export", east(100000), domain="acme", context=strong)
    assert not authz.check("rep", "export", east(100001), domain="acme", context=strong)
    assert not authz.check("rep", "export", east(amount="5"), domain="acme",  # type: ignore[arg-type]
                           context=strong)


def test_a_requirement_needs_its_context(authz: Authorizer) -> None:
    assert not authz.check("rep", "export", east(), domain="acme")
    assert not authz.check("rep", "export", east(), domain="acme", context={"mfa": False})
    decision = authz.explain("rep", "export", east(), domain="acme")
    assert not decision.allowed
    assert decision.missing_context == ("mfa",)
    assert "export needs a second factor; this session has none" in decision.reason
    assert authz.check_many([("rep", "export", east())], domain="acme",
                            context={"mfa": 2}) == [True]


def test_network_and_hours_in_the_domain_time_zone(authz: Authorizer) -> None:
    office = {"ip": "10.2.3.4"}
    assert authz.check("clerk", "read", east(), domain="acme", context=office)
    assert not authz.check("clerk", "read", east(), domain="acme", context={"ip": "8.8.8.8"})
    assert not authz.check("clerk", "read", east(), domain="acme",
                           context={**office, "now": NOW + 9 * 3600})  # 21:00
    rules = compile_document(DomainDocument.model_validate({**DOCUMENT, "time_zone": "Asia/Shanghai"}))
    shanghai = Authorizer.from_rules(rules, clock=lambda: NOW)
    assert not shanghai.check("clerk", "read", east(), domain="acme", context=office)  # 20:00 there


def test_explain_names_the_failing_condition(authz: Authorizer) -> None:
    west = Record("customer", owner="x", attributes={"region": "West"})
    decision = authz.explain("rep", "read", west, domain="acme")
    assert not decision.allowed
    assert "covers this customer record owned by x in no known department but for its " \
        "conditions: region is 'West'" in decision.reason
    assert "where region in account.territories" in decision.reason


def test_the_public_pool(authz: Authorizer) -> None:
    unowned = Record("customer", attributes={"pool": "p1"})
    assert authz.check("rep", "claim", unowned, domain="acme")
    assert not authz.check("rep", "claim", Record("customer", owner="x", attributes={"pool": "p1"}),
                           domain="acme")
    assert not authz.check("rep", "claim", Record("customer", attributes={"pool": "p2"}),
                           domain="acme")


def test_a_sub_account_is_capped_by_its_parents_conditions(authz: Authorizer) -> None:
    assert authz.check("kid", "read", east(), domain="acme")
    west = Record("customer", owner="x", attributes={"region": "West"})
    assert not authz.check("kid", "read", west, domain="acme")  # its parent has no West


def test_filters_settle_requirements(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep", "export", "customer", domain="acme", context={"mfa": True})
    assert flt.matches("x", "sales", attributes={"amount": 10})
    assert not flt.matches("x", "sales", attributes={"amount": 10**6})
    assert authz.scope_filter("rep", "export", "customer", domain="acme").nothing


def test_documents_round_trip_through_rules() -> None:
    rules = compile_document(DomainDocument.model_validate(DOCUMENT))
    again = [compile_document(d) for d in decompile_rules(rules)]
    assert {r for batch in again for r in batch} == set(rules)


_VALUES: list[Any] = [None, "East", "east", "", 0, 1, 1.0, 1.5, -1, 100000, 100001, True, False,
                      float("nan"), [1], {"a": 1}, "100000"]


def test_compiled_tests_answer_as_passes() -> None:
    """Guards compile their tests into predicates (the check path); each answers exactly as
    :func:`passes` on values of every kind, subclasses and NaN included."""
    import enum

    from salesauthz.conditions import OPERATORS, Test, compile_test, passes

    class Colour(enum.StrEnum):
        EAST = "East"

    class Size(enum.IntEnum):
        ONE = 1

    values = [*_VALUES, Colour.EAST, Size.ONE]
    operands: list[Any] = [*_VALUES, ("East", "North"), ("East", 1, True), (1, 1.5), (),
                           (float("nan"),), (Colour.EAST,), (True,), (False, "x")]
    for op in OPERATORS:
        for operand in ([True, False] if op == "null" else operands):
            test = Test("x", op, operand)
            predicate = compile_test(test)
            for value in values:
                assert predicate(value) == passes(test, value), (op, operand, value)


def test_a_plain_scope_beside_a_conditioned_one_still_counts() -> None:
    """``@team`` and ``@all where region = East`` on one action: a record of the team passes
    whatever its region; any other record only where the condition holds (the check's
    condition-only short cut must not skip the plain part)."""
    from salesauthz.reference import reference_enforcer, request

    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate({
        "domain": "acme",
        "resources": {"customer": {"actions": ["read"], "attributes": {"region": "str"}}},
        "departments": {"d1": {}, "d2": {}},
        "roles": {"rep": {"permissions": [
            {"scope": "team", "customer": ["read"]},
            {"scope": "all", "where": {"region": {"in": ["East"]}}, "customer": ["read"]}]}},
        "accounts": {"u": {"department": "d1", "roles": ["rep"]},
                     "mate": {"department": "d1"}, "far": {"department": "d2"}},
    })))
    cases = {("mate", None, "West"): True, ("far", None, "West"): False,
             ("far", None, "East"): True, ("far", "d1", "West"): True, ("mate", "d2", "West"): False}
    enforcer = reference_enforcer(authz.rules())
    for (owner, department, region), expected in cases.items():
        record = Record("customer", owner=owner, department=department,
                        attributes={"region": region})
        assert authz.check("u", "read", record, domain="acme") is expected, (owner, department)
        assert authz.check_many([("u", "read", record)], domain="acme") == [expected]
        assert bool(enforcer.enforce(*request("u", "acme", "read", record))) is expected


def test_resolved_conditions_are_shared_but_never_across_kinds_of_value() -> None:
    """Accounts whose condition resolves to the same tests share one guard object (checks of a
    whole territory touch one); ``True``, ``1`` and ``1.0`` are equal Python values but not the
    same test, so each gets its own."""
    from salesauthz.conditions import Condition

    condition = Condition.of({"tier": {"eq": "account.tier"}, "region": {"in": "account.regions"}})
    assert condition is not None

    def guard(tier: Any, regions: list[str]) -> Any:
        resolved = condition.resolve({"tier": tier, "regions": regions}, "UTC")
        assert resolved is not None
        return resolved[0]

    assert guard(1, ["East", "North"]) is guard(1, ["East", "North"])
    assert guard(1, ["East"]) is not guard(1, ["East", "North"])
    as_bool, as_int, as_float = guard(True, ["East"]), guard(1, ["East"]), guard(1.0, ["East"])
    assert len({id(as_bool), id(as_int), id(as_float)}) == 3
    record = {"tier": True, "region": "East"}
    assert as_bool.holds("x", (), record, None)
    assert not as_int.holds("x", (), record, None)  # a bool is never a number
    assert as_int.holds("x", (), {"tier": 1, "region": "East"}, None)


def test_a_conditioned_team_scope_finds_a_record_in_its_owners_department() -> None:
    """``@team where region = East``: a record without a department is in its owner's (the
    condition does not spare the department lookup when the scope itself reads it)."""
    from salesauthz.reference import reference_enforcer, request

    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate({
        "domain": "acme",
        "resources": {"customer": {"actions": ["read"], "attributes": {"region": "str"}}},
        "departments": {"d1": {}, "d2": {}},
        "roles": {"rep": {"permissions": [
            {"scope": "team", "where": {"region": {"in": ["East"]}}, "customer": ["read"]}]}},
        "accounts": {"u": {"department": "d1", "roles": ["rep"]},
                     "mate": {"department": "d1"}, "far": {"department": "d2"}},
    })))
    cases = {("mate", "East"): True, ("far", "East"): False, ("mate", "West"): False}
    enforcer = reference_enforcer(authz.rules())
    for (owner, region), expected in cases.items():
        record = Record("customer", owner=owner, attributes={"region": region})
        assert authz.check("u", "read", record, domain="acme") is expected, owner
        assert authz.check_many([("u", "read", record)], domain="acme") == [expected]
        assert bool(enforcer.enforce(*request("u", "acme", "read", record))) is expected

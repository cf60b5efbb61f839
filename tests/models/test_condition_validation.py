"""SA170-SA175: conditions (``where:``) and requirements (``requires:``) are validated with the
file and line of the offending value; a bad one never reaches the compiler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from salesauthz import Authorizer, PolicyError
from salesauthz.models import DomainDocument, compile_document

BASE: dict[str, Any] = {
    "domain": "acme",
    "resources": {"customer": {"actions": ["read", "export"],
                               "attributes": {"region": "str", "amount": "int", "vip": "bool",
                                              "score": "float"}},
                  "note": ["read"]},
    "departments": {"sales": {}},
    "roles": {"rep": {"permissions": []}},
    "accounts": {"a": {"department": "sales", "roles": ["rep"]}},
}


def issues_of(tmp_path: Path, permission: dict[str, Any], **more: Any) -> list[tuple[str, str, int | None]]:
    document = {**BASE, **more, "roles": {"rep": {"permissions": [permission]}}}
    (tmp_path / "acme.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    try:
        Authorizer.from_directory(tmp_path)
    except PolicyError as exc:
        return [(i.code, i.message, i.line) for i in exc.issues]
    return []


def codes(found: list[tuple[str, str, int | None]]) -> list[str]:
    return [code for code, _, _ in found]


def test_a_sound_condition_passes(tmp_path: Path) -> None:
    assert issues_of(tmp_path, {"scope": "all", "customer": ["read"],
                                "where": {"region": ["East", "North"], "amount": {"lt": 10, "ge": 0},
                                          "score": {"gt": 1}, "vip": True, "owner": None},
                                "requires": {"mfa": 2, "ip": "10.0.0.0/8",
                                             "hours": "Mon-Fri 08:00-20:00"}}) == []


@pytest.mark.parametrize(("where", "code", "fragment"), [
    ({"regoin": "East"}, "SA170", "unknown attribute 'regoin' of 'customer'"),
    ({"amount": {"lt": "100"}}, "SA171", "amount is int, but is compared with text '100'"),
    ({"amount": 1.5}, "SA171", "amount is int, but is compared with the number 1.5"),
    ({"region": [1, "East"]}, "SA171", "region is str, but is compared with the number 1"),
    ({"vip": {"gt": True}}, "SA171", "vip is a boolean and cannot be compared with gt"),
    ({"vip": 1}, "SA171", "vip is bool"),
    ({"region": {"like": "E"}}, "SA172", "unknown operator 'like' for 'region'"),
    ({"region": {"null": "yes"}}, "SA172", "null takes true or false"),
    ({"region": {"in": "East"}}, "SA172", "in takes a list or account.<attribute>"),
    ({"region": {}}, "SA172", "region has no test"),
])
def test_bad_where(tmp_path: Path, where: dict[str, Any], code: str, fragment: str) -> None:
    found = issues_of(tmp_path, {"scope": "all", "customer": ["read"], "where": where})
    assert codes(found) == [code], found
    assert fragment in found[0][1]
    line = found[0][2]
    assert line is not None
    assert line > 8  # the line of the test, not the document's


@pytest.mark.parametrize(("requires", "code", "fragment"), [
    ({"ip": ["10.0.0.0/8", "10.0.0.300/8"]}, "SA173", "'10.0.0.300/8' is not a network"),
    ({"ip": []}, "SA173", "takes a list of networks"),
    ({"hours": "Mon-Fri 20:00-08:00"}, "SA174", "hours 'Mon-Fri 20:00-08:00'"),
    ({"hours": "Mon-Fro 08:00-20:00"}, "SA174", "hours 'Mon-Fro 08:00-20:00'"),
    ({"hours": 8}, "SA174", "hours takes text"),
    ({"mfa": "yes"}, "SA171", "mfa takes true or an assurance level"),
    ({"mfa": 0}, "SA171", "mfa takes true or an assurance level"),
    ({"second_factor": True}, "SA175", "unknown context key 'second_factor'"),
])
def test_bad_requires(tmp_path: Path, requires: dict[str, Any], code: str, fragment: str) -> None:
    found = issues_of(tmp_path, {"scope": "all", "customer": ["export"], "requires": requires})
    assert codes(found) == [code], found
    assert fragment in found[0][1]


def test_each_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    found = issues_of(tmp_path, {"scope": "all", "customer": ["read"],
                                 "where": {"regoin": "x", "amount": {"lt": "x"}, "region": {"like": 1}},
                                 "requires": {"ip": ["nope"], "hours": "never", "foo": 1}})
    assert sorted(codes(found)) == ["SA170", "SA171", "SA172", "SA173", "SA174", "SA175"]


def test_types_without_declared_attributes_are_not_checked(tmp_path: Path) -> None:
    # Built-in types (account) cannot declare attributes; nor did `note`.
    assert issues_of(tmp_path, {"scope": "all", "note": ["read"], "account": ["manage"],
                                "where": {"anything": 1}}) == []
    # A set over a checked and an unchecked type: the checked one still counts.
    found = issues_of(tmp_path, {"scope": "all", "note": ["read"], "customer": ["read"],
                                 "where": {"anything": 1}})
    assert codes(found) == ["SA170"]
    # '*': the attribute must be declared by some type.
    assert codes(issues_of(tmp_path, {"scope": "all", "*": ["read"], "where": {"anything": 1}})) \
        == ["SA170"]
    assert issues_of(tmp_path, {"scope": "all", "*": ["read"], "where": {"region": "East"}}) == []


def test_account_attributes(tmp_path: Path) -> None:
    permission = {"scope": "all", "customer": ["read"],
                  "where": {"region": {"in": "account.territories"}, "amount": {"le": "account.limit"}}}
    good = {"a": {"department": "sales", "roles": ["rep"],
                  "attributes": {"territories": ["East"], "limit": 5}}}
    assert issues_of(tmp_path, permission, accounts=good) == []
    scalar = {"a": {"department": "sales", "roles": ["rep"], "attributes": {"territories": "East"}}}
    assert issues_of(tmp_path, permission, accounts=scalar) == []  # one value: membership is equality
    for attributes, fragment in [({"limit": "5"}, "'limit' is compared with amount (int) by le, "
                                                  "but holds text '5'"),
                                 ({"limit": [5]}, "'limit' is compared with amount (int) by le"),
                                 ({"territories": [["East"]]}, "a list item ['East']"),
                                 ({"other": {"x": 1}}, "is not text, a number, a boolean"),
                                 ({"other": None}, "null is not a value")]:
        found = issues_of(tmp_path, permission, accounts={
            "a": {"department": "sales", "roles": ["rep"], "attributes": attributes}})
        assert codes(found) == ["SA171"], (attributes, found)
        assert fragment in found[0][1], found


def test_an_unknown_time_zone(tmp_path: Path) -> None:
    found = issues_of(tmp_path, {"scope": "all", "customer": ["read"]}, time_zone="Asia/Shanghia")
    assert codes(found) == ["SA174"]
    assert "unknown time zone 'Asia/Shanghia'" in found[0][1]
    assert found[0][2] is not None


def test_grants_are_checked_too(tmp_path: Path) -> None:
    accounts = {"a": {"department": "sales", "grants": [
        {"scope": "own", "customer": ["read"], "requires": {"ip": ["x"]}}]}}
    found = issues_of(tmp_path, {"scope": "all", "customer": ["read"]}, accounts=accounts)
    assert codes(found) == ["SA173"]


def test_stored_rules_are_checked_without_a_file() -> None:
    document = DomainDocument.model_validate({**BASE, "roles": {"rep": {"permissions": [
        {"scope": "all", "customer": ["read"], "where": {"region": "East"}}]}}})
    rules = [r for r in compile_document(document) if r[0] != "p10" or r[3] != "region"]
    rules.append(("p10", "acme", "customer", "area", "str"))
    with pytest.raises(PolicyError) as caught:
        Authorizer.from_rules(rules)
    assert [i.code for i in caught.value.issues] == ["SA170"]

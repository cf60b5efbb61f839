"""SA215: conditions that can never hold (contradictory tests, an empty list, an account
attribute no account given the permission has)."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesauthz.checker.lint import check_directory

HEAD = """\
domain: acme
resources:
  customer: {actions: [read], attributes: {region: str, amount: int}}
departments:
  sales: {}
roles:
  rep:
    permissions:
      - scope: all
        where: WHERE
        customer: [read]
accounts:
  boss: {department: sales, grants: [{scope: all, account: [manage], role: [escalate]}]}
  a: {department: sales, roles: [rep], attributes: {territories: [East]}}
"""


def findings(tmp_path: Path, where: str) -> list[str]:
    (tmp_path / "acme.yaml").write_text(HEAD.replace("WHERE", where), encoding="utf-8")
    return [f.message for f in check_directory(tmp_path).findings if f.code == "SA215"]


@pytest.mark.parametrize(("where", "why"), [
    ("{amount: {gt: 10, lt: 5}}", "no value is both above 10 and below 5"),
    ("{amount: {gt: 5, le: 5}}", "no value is both above 5 and below 5"),
    ("{amount: {ge: 5, lt: 5}}", "no value is both above 5 and below 5"),
    ("{region: {in: []}}", "no value is in every list it must be in"),
    ("{region: {eq: East, in: [West, North]}}", "no value is in every list it must be in"),
    ("{region: {'null': true, eq: East}}", "missing (null) and have a value at once"),
    ("{region: {'null': true, in: account.territories}}", "missing (null) and have a value"),
    ("{amount: {in: [1, 2], gt: 5}}", "none of its allowed values is within its bounds"),
    ("{region: {in: account.regions}}", "no account assigned this role has the attribute 'regions'"),
])
def test_never_holds(tmp_path: Path, where: str, why: str) -> None:
    found = findings(tmp_path, where)
    assert len(found) == 1, found
    assert why in found[0]


@pytest.mark.parametrize("where", [
    "{amount: {ge: 5, le: 5}}",
    "{amount: {gt: 1, lt: 3}}",
    "{region: {eq: East, in: [East, West]}}",
    "{region: {'null': false, eq: East}}",
    "{region: {in: account.territories}}",
    "{amount: {in: [1, 7], gt: 5}}",
    "{owner: null, region: East}",
])
def test_can_hold(tmp_path: Path, where: str) -> None:
    assert findings(tmp_path, where) == []


def test_an_unassigned_role_says_nothing_about_account_attributes(tmp_path: Path) -> None:
    text = HEAD.replace("WHERE", "{region: {in: account.regions}}").replace(
        "roles: [rep], attributes", "attributes")
    (tmp_path / "acme.yaml").write_text(text, encoding="utf-8")
    assert [f.code for f in check_directory(tmp_path).findings if f.code == "SA215"] == []

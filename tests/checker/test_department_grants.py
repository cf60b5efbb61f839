"""Grants to departments in the checker: validation with file:line, the sub-account lint, who-can,
what-can and diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesauthz._engine import compile_domains
from salesauthz.checker.diff import diff_directories
from salesauthz.checker.lint import check_directory
from salesauthz.checker.listings import holders, what_can_rows
from salesauthz.errors import PolicyError
from salesauthz.models import load_directory

NOW = 1_900_000_000.0

POLICY = """\
domain: acme
resources:
  customer: [read, update]
departments:
  sales: {}
  east: {parent: sales}
  service:
    grants:
      - scope: {custom: [east]}
        customer: [read]
        expires: 2031-01-01T00:00:00Z
  service-1: {parent: service}
accounts:
  boss: {department: sales, grants: [{scope: all, account: [manage]}]}
  svc: {department: service-1}
  helper: {department: sales, also_in: [service-1]}
  east_rep: {department: east}
  sub: {department: service-1, parent: boss}
"""


def write(tmp_path: Path, text: str = POLICY) -> Path:
    (tmp_path / "acme.yaml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("old", "new", "code", "line"), [
    ("        customer: [read]\n        expires", "        widget: [read]\n        expires", "SA152", 10),
    ("        customer: [read]\n        expires", "        customer: [fly]\n        expires", "SA153", 10),
    ("{custom: [east]}", "{custom: [nowhere]}", "SA120", 9),
])
def test_unknown_names_in_a_grant_to_a_department_are_reported_at_their_line(
        tmp_path: Path, old: str, new: str, code: str, line: int) -> None:
    assert old in POLICY
    with pytest.raises(PolicyError) as caught:
        load_directory(write(tmp_path, POLICY.replace(old, new)))
    found = [(issue.code, issue.line) for issue in caught.value.issues]
    assert (code, line) in found, found


def test_holders_and_rights_include_department_grants(tmp_path: Path) -> None:
    index = compile_domains(load_directory(write(tmp_path)).rules)["acme"]
    # svc (main department below service), helper (auxiliary department below service) and the
    # sub-account (capped by boss, who holds no customer:read) — not boss, not east_rep
    assert holders(index, "read", "customer", NOW) == ["helper", "svc"]
    assert [row["permission"] for row in what_can_rows(index, "svc", NOW)] == [
        "customer:read@custom[east]"]
    assert holders(index, "read", "customer", 1_924_992_000.0) == []  # expired at 2031-01-01


def test_a_sub_account_holding_a_department_grant_its_parent_lacks_is_linted(tmp_path: Path) -> None:
    found = [f for f in check_directory(write(tmp_path)).findings if f.code == "SA201"]
    assert len(found) == 1, found
    assert "the grant to department 'service'" in found[0].message
    assert (found[0].line, found[0].column) == (18, 9)  # sub's `department:`, where it joins


def test_diff_shows_who_gains_through_a_new_department_grant(tmp_path: Path) -> None:
    old, new_dir = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new_dir.mkdir()
    write(old)
    write(new_dir, POLICY.replace("        customer: [read]\n        expires",
                                  "        customer: [read, update]\n        expires"))
    changes = {(c.account, c.permission) for c in diff_directories(old, new_dir).changes}
    assert ("svc", "customer:update@custom[east]") in changes
    assert ("helper", "customer:update@custom[east]") in changes
    assert not any(account == "east_rep" for account, _ in changes)


CONDITIONED = """\
domain: acme
sensitive_actions: [export]
resources:
  customer: {actions: [read, export], attributes: {region: str}}
departments:
  service:
    grants:
      - scope: all
        where: {region: {in: account.territories}}
        customer: [read]
      - scope: all
        customer: [export]
accounts:
  svc: {department: service}
"""


def test_conditions_and_sensitive_actions_of_department_grants_are_linted(tmp_path: Path) -> None:
    findings = check_directory(write(tmp_path, CONDITIONED)).findings
    never = [f for f in findings if f.code == "SA215"]
    assert len(never) == 1, never
    assert "no account of department 'service' has the attribute 'territories'" in never[0].message
    assert never[0].line == 9
    sensitive = [f for f in findings if f.code == "SA214"]
    assert len(sensitive) == 1, sensitive
    assert "department 'service' (a grant to a department)" in sensitive[0].message
    assert sensitive[0].line == 12
    # an account of the department with the attribute: the condition can hold
    fixed = CONDITIONED.replace("svc: {department: service}",
                                "svc: {department: service, attributes: {territories: [East]}}")
    assert not [f for f in check_directory(write(tmp_path, fixed)).findings if f.code == "SA215"]

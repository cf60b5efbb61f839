"""The checker and the record model: shares, auxiliary departments, reporting lines, timed roles
(who-can, explain, what-can, review, diff, the lints SA211–SA213, policy tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from salesauthz import _engine as engine
from salesauthz._engine import Snapshot
from salesauthz.checker.analysis import excess
from salesauthz.checker.cli import main
from salesauthz.checker.diff import diff_directories
from salesauthz.checker.lint import check_directory
from salesauthz.checker.listings import holders, holders_if_shared, what_can_rows
from salesauthz.checker.review import review_snapshot
from salesauthz.checker.testing import TestFileError, run_tests
from salesauthz.models.loader import load_directory
from salesauthz.values import Share

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "record_model"
NOW = 1_800_000_000.0  # 2027-01-15, before rep_e1's senior_rep assignment ends (2027-03-31)
UNTIL = 1_806_451_200.0  # 2027-03-31T00:00:00Z


def _snapshot(path: Path = FIXTURE) -> Snapshot:
    return engine.compile_domains(load_directory(path).rules)["acme"]


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The command's JSON output (its values as JSON has them: untyped)."""
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict)
    return data


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURE, target)
    return target


def _edit(directory: Path, old: str, new: str) -> None:
    path = directory / "acme.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- who-can and explain ------------------------------------------------------------------------


def test_who_can_on_a_record_with_shares() -> None:
    index = _snapshot()
    plain = holders(index, "update", "customer", NOW, owner="lead_e1")
    assert plain == ["alice", "lead_e1", "rep_e1"]
    shared = holders(index, "update", "customer", NOW, owner="lead_e1",
                     shares=(Share("read_write", account="rep_w1"),))
    assert shared == ["alice", "lead_e1", "rep_e1", "rep_w1"]
    # A department share reaches the department's members and those also in it (rep_w1).
    service = (Share("read_only", department="service"),)
    assert holders(index, "read", "customer", NOW, owner="lead_e1", shares=service) == [
        "alice", "dir_1", "lead_e1", "rep_e1", "rep_w1", "svc_1"]
    # read_only does not include update.
    assert holders(index, "update", "customer", NOW, owner="lead_e1", shares=service) == plain


def test_who_can_names_who_would_if_the_record_were_shared() -> None:
    index = _snapshot()
    assert holders_if_shared(index, "update", "customer", NOW, owner="lead_e1") == {
        "rep_w1": ["read_write"]}
    assert holders_if_shared(index, "read", "customer", NOW, owner="lead_e1") == {
        "rep_w1": ["read_only", "read_write"], "svc_1": ["read_only", "read_write"]}
    # On some record, a right held only at `shared` counts (scope shared).
    assert "svc_1" in holders(index, "read", "customer", NOW)


def test_who_can_cli_with_shares(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "update", "customer", str(FIXTURE), "--domain", "acme", "--owner",
                 "lead_e1", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "3 accounts may customer:update on a record owned by lead_e1 in acme" in out
    assert "1 more account would, if the record were shared with them: rep_w1 (read_write)" in out
    assert main(["who-can", "update", "customer", str(FIXTURE), "--domain", "acme", "--owner",
                 "lead_e1", "--share", "read_write:account=rep_w1", "--share",
                 "read_only:department=service", "--format", "json"]) == 0
    data = _json(capsys)
    assert [row["account"] for row in data["accounts"]] == [
        "alice", "lead_e1", "rep_e1", "rep_w1"]
    assert {"account": "rep_w1", "scope": "own+shared", "capped_by": None} in data["accounts"]
    assert data["shares"] == [{"level": "read_write", "account": "rep_w1", "department": None},
                              {"level": "read_only", "account": None, "department": "service"}]
    assert data["if_shared"] == []


@pytest.mark.parametrize(("share", "message"), [
    ("read_wrte:account=rep_w1", "unknown share level 'read_wrte' for customer in domain 'acme': "
                                 "did you mean 'read_write'?"),
    ("read_write:account=rep_x1", "unknown account 'rep_x1' (--share) in domain 'acme'"),
    ("read_write:department=servce", "unknown department 'servce' (--share)"),
    ("read_write:rep_w1", "write LEVEL:account=NAME or LEVEL:department=NAME"),
    ("read_write:team=east", "write LEVEL:account=NAME or LEVEL:department=NAME"),
])
def test_who_can_refuses_a_share_it_cannot_mean(share: str, message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "read", "customer", str(FIXTURE), "--domain", "acme", "--share", share]) == 2
    assert message in capsys.readouterr().err


def test_a_share_on_a_type_without_share_levels_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "read", "order", str(FIXTURE), "--domain", "acme", "--share",
                 "read_only:account=rep_w1"]) == 2
    assert "order declares no share levels" in capsys.readouterr().err


def test_explain_with_a_share(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "svc_1", "read", "customer", str(FIXTURE), "--domain", "acme", "--owner",
                 "lead_e1", "--share", "read_only:department=service", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["allowed"] is True
    assert data["scope"] == "shared"
    assert data["record"] == {"type": "customer", "owner": "lead_e1", "department": None,
                              "shares": [{"level": "read_only", "account": None,
                                          "department": "service"}]}
    assert main(["explain", "svc_1", "read", "customer", str(FIXTURE), "--domain", "acme", "--owner",
                 "lead_e1", "--format", "json"]) == 0
    assert _json(capsys)["allowed"] is False


# -- what-can and review ------------------------------------------------------------------------


def test_what_can_shows_shared_rights_and_when_timed_scopes_end() -> None:
    index = _snapshot()
    rows = {row["permission"]: row for row in what_can_rows(index, "rep_e1", NOW)}
    update = rows["customer:update@shared+team"]
    assert update["expiring"] == [{"scope": "team", "until": "2027-03-31T00:00:00Z",
                                   "through": "role senior_rep"}]
    assert update["until"] == "2027-03-31T00:00:00Z"
    assert update["text"] == ("customer:update@shared+team (team until 2027-03-31T00:00:00Z through "
                              "role senior_rep)")
    # After the assignment ends, the team scope is gone and nothing is said to expire.
    after = {row["permission"]: row for row in what_can_rows(index, "rep_e1", UNTIL)}
    assert after["customer:update@own+shared"]["expiring"] == []
    assert [row["permission"] for row in what_can_rows(index, "svc_1", NOW)] == ["customer:read@shared+team"]


def test_what_can_cli_lists_timed_roles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["what-can", "rep_e1", str(FIXTURE), "--domain", "acme", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("timed roles: senior_rep until 2027-03-31T00:00:00Z")
    assert "customer:read@shared+team (team until 2027-03-31T00:00:00Z through role senior_rep)" in out
    assert main(["what-can", "rep_w1", str(FIXTURE), "--domain", "acme", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["also_in"] == ["service"]
    assert data["timed_roles"] == []
    assert main(["what-can", "rep_e1", str(FIXTURE), "--domain", "acme", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["reports_to"] == "lead_e1"
    assert data["timed_roles"] == [{"role": "senior_rep", "until": "2027-03-31T00:00:00Z", "expired": False}]


def test_review_shows_record_model_facts_and_flags_a_timed_role_near_its_end() -> None:
    index = _snapshot()
    rows = {row.account: row for row in review_snapshot(index, NOW)}
    assert rows["rep_w1"].also_in == ["service"]
    assert rows["lead_e1"].reports_to == "dir_1"
    assert rows["rep_e1"].timed_text == "senior_rep until 2027-03-31T00:00:00Z"
    assert "expiring-soon" not in rows["rep_e1"].flags  # 75 days away
    assert "customer:update@own+shared" in rows["rep_w1"].permissions
    # Field modes on records shared with the account: the rep role shows phone on its own only.
    assert "customer.phone: hidden on records shared read_only/read_write with it, visible on " \
           "records owned by lead_e1" in rows["lead_e1"].fields
    soon = {row.account: row for row in review_snapshot(index, UNTIL - 10 * 86400)}
    assert "expiring-soon" in soon["rep_e1"].flags
    gone = {row.account: row for row in review_snapshot(index, UNTIL)}
    assert gone["rep_e1"].timed_text == "senior_rep expired at 2027-03-31T00:00:00Z"
    assert "expiring-soon" not in gone["rep_e1"].flags


def test_review_formats_carry_the_new_columns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", str(FIXTURE), "--domain", "acme"]) == 0
    markdown = capsys.readouterr().out
    assert "| west-1 (also in service) |" in markdown
    assert "rep, senior_rep until 2027-03-31T00:00:00Z" in markdown
    assert main(["review", str(FIXTURE), "--domain", "acme", "--format", "json"]) == 0
    accounts = {a["account"]: a for a in _json(capsys)["accounts"]}
    assert accounts["lead_e1"]["reports_to"] == "dir_1"
    assert accounts["rep_w1"]["also_in"] == ["service"]


# -- comparing shared rights --------------------------------------------------------------------


def test_a_shared_right_is_neither_everything_nor_nothing() -> None:
    index = _snapshot()
    shared = engine.effective(index, "svc_1", NOW)[0][("customer", "read")]
    assert shared.guarded
    assert excess(shared, None, index)  # it reaches something
    assert "shared read_only/read_write with svc_1" in excess(shared, None, index).describe()
    assert not excess(shared, engine.effective(index, "alice", NOW)[0][("customer", "read")], index)
    assert not excess(shared, shared, index)
    # rep_w1's shared (another account) does not reach what svc_1's does.
    other = engine.effective(index, "rep_w1", NOW)[0][("customer", "read")]
    assert excess(shared, other, index).shared


# -- diff -------------------------------------------------------------------------------------------


def test_diff_sees_a_gained_shared_right_and_changed_facts(tmp_path: Path) -> None:
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "    read_write: [read, update]", "    read_write: [read, update, export]")
    _edit(new, "      - scope: shared\n        customer: [read, update]\n",
          "      - scope: shared\n        customer: [read, update, export]\n")
    _edit(new, "rep_w1: {department: west-1, also_in: [service], roles: [rep]}",
          "rep_w1: {department: west-1, also_in: [service, east-1], roles: [rep]}")
    _edit(new, "lead_e1: {department: east-1, roles: [rep], reports_to: dir_1}",
          "lead_e1: {department: east-1, roles: [rep]}")
    result = diff_directories(old, new, now=NOW)
    gains = {(c.account, c.permission): c.records for c in result.gains}
    assert gains[("lead_e1", "customer:export@shared")] == "records shared read_write with lead_e1"
    losses = {(c.account, c.permission): c.records for c in result.losses}
    assert losses[("dir_1", "customer:read@subordinate_tree")] == "records owned by lead_e1 and rep_e1"
    facts = {(f.subject, f.text, f.kind) for f in result.facts}
    assert facts == {
        ("customer.read_write", "share level customer.read_write + export", "change"),
        ("rep_w1", "auxiliary departments + east-1", "change"),
        ("lead_e1", "no longer reports to dir_1", "change"),
    }
    assert result.gained


def test_diff_a_timed_role_lasting_longer_is_a_gain(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "{role: senior_rep, expires: 2027-03-31}", "{role: senior_rep, expires: 2027-06-30}")
    result = diff_directories(old, new, now=NOW)
    assert result.changes == []
    assert result.fields == []
    assert [(f.subject, f.kind, f.text) for f in result.facts] == [
        ("rep_e1", "gain", "role senior_rep until 2027-06-30T00:00:00Z (was until 2027-03-31T00:00:00Z)")]
    assert result.gained
    assert main(["diff", str(old), str(new), "--fail-on-gain", "--no-color"]) == 1
    assert "+ acme  rep_e1  role senior_rep until 2027-06-30T00:00:00Z" in capsys.readouterr().out
    # The other way round it ends sooner: a loss.
    back = diff_directories(new, old, now=NOW)
    assert [f.kind for f in back.facts] == ["loss"]
    assert not back.gained
    # Made permanent, and removed.
    _edit(new, "roles: [rep, {role: senior_rep, expires: 2027-06-30}]", "roles: [rep, senior_rep]")
    assert [(f.kind, f.text) for f in diff_directories(old, new, now=NOW).facts] == [
        ("gain", "role senior_rep now permanent (was until 2027-03-31T00:00:00Z)")]
    _edit(new, "roles: [rep, senior_rep]", "roles: [rep]")
    removed = diff_directories(old, new, now=NOW)
    assert [(f.kind, f.text) for f in removed.facts] == [
        ("loss", "role senior_rep until 2027-03-31T00:00:00Z removed")]
    assert removed.losses  # and its team scope goes now


def test_diff_field_modes_on_shared_records(tmp_path: Path) -> None:
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "phone: {mode: visible, scope: own, otherwise: hidden}",
          "phone: {mode: visible, scope: own, otherwise: hidden}\n        name: {mode: visible, "
          "scope: own, otherwise: readonly}")
    _edit(old, "  customer: [name, phone]", "  customer: [name, phone]")
    result = diff_directories(old, new, now=NOW)
    lead = [c for c in result.fields if c.account == "lead_e1"]
    assert [(c.field, c.before, c.after, c.records) for c in lead] == [
        ("name", "visible", "readonly", "records shared read_only/read_write with it")]


# -- lints ------------------------------------------------------------------------------------------


def test_the_fixture_is_clean() -> None:
    result = check_directory(FIXTURE, now=NOW)
    assert result.findings == []


def test_sa211_on_actions_no_level_includes_and_on_field_rules(tmp_path: Path) -> None:
    policy = _copy(tmp_path, "p")
    _edit(policy, "  director:\n", "  lister:\n    permissions:\n      - scope: shared\n"
          "        customer: [read, export]\n    fields:\n      order:\n"
          "        total: {mode: visible, scope: shared}\n  director:\n")
    _edit(policy, "  customer: [name, phone]", "  customer: [name, phone]\n  order: [total]")
    _edit(policy, "roles: [director]", "roles: [director, lister]")
    found = [(f.code, f.line, f.message) for f in check_directory(policy, now=NOW).findings]
    assert [(code, line) for code, line, _ in found] == [("SA211", 48), ("SA211", 51)]
    assert "no share level of 'customer' includes 'export'" in found[0][2]
    assert "the rule for order.total applies on shared records, but 'order' declares no share " \
           "levels" in found[1][2]


def test_sa211_for_a_wildcard_type(tmp_path: Path) -> None:
    policy = _copy(tmp_path, "p")
    _edit(policy, "sharing:\n  customer:\n    read_only: [read]\n    read_write: [read, update]\n", "")
    _edit(policy, "      - scope: shared\n        customer: [read]\n",
          "      - scope: shared\n        \"*\": [read]\n")
    messages = [f.message for f in check_directory(policy, now=NOW).findings if f.code == "SA211"]
    assert "role 'service_rep' holds *:read@shared, but no resource type declares share levels, so it " \
           "can never allow anything" in messages


def test_sa212_follows_the_reporting_line_up(tmp_path: Path) -> None:
    policy = _copy(tmp_path, "p")
    _edit(policy, "  svc_1: {department: service, roles: [service_rep]}",
          "  svc_1: {department: service, roles: [service_rep]}\n"
          "  boss: {department: east, roles: [senior_rep], reports_to: mid}\n"
          "  mid: {department: east, roles: [senior_rep], reports_to: kid}\n"
          "  kid: {department: east, roles: [rep], parent: boss}\n"
          "  grandkid: {department: east, parent: kid, roles: [rep]}\n"
          "  other: {department: east, parent: mid, roles: [rep], reports_to: mid}")
    sa212 = [f for f in check_directory(policy, now=NOW).findings if f.code == "SA212"]
    # boss → mid → kid, a sub-account of boss; a sub-account reporting to its parent is fine.
    assert [f.message for f in sa212] == [
        "account 'boss' reports (through mid) to 'kid', which is one of its own sub-accounts "
        "(kid → boss)"]


def test_sa201_and_sa202_see_shared_rights(tmp_path: Path) -> None:
    policy = _copy(tmp_path, "p")
    # A sub-account holding @shared under a parent that does not: records shared with it are
    # beyond the ceiling. A manager holding only team cannot have granted @shared (it needs @all).
    _edit(policy, "  svc_1: {department: service, roles: [service_rep]}",
          "  svc_1: {department: service, roles: [service_rep]}\n"
          "  helper: {department: service, parent: svc_1, roles: [service_rep]}\n"
          "  mgr: {department: east, roles: [manager]}\n"
          "  temp:\n    department: east-1\n    grants:\n      - scope: shared\n"
          "        customer: [read]")
    _edit(policy, "  alice: {department: sales, roles: [admin]}", "  alice: {department: sales, roles: []}")
    _edit(policy, "  director:\n", "  manager:\n    permissions:\n      - scope: department_tree\n"
          "        customer: [read]\n        account: [manage]\n  director:\n")
    found = {(f.code, f.message.split(":")[0]) for f in check_directory(policy, now=NOW).findings}
    assert ("SA201", "sub-account 'helper' holds customer") in found
    sa201 = next(f for f in check_directory(policy, now=NOW).findings if f.code == "SA201")
    assert "records shared read_only/read_write with helper" in sa201.message
    sa202 = [f.message for f in check_directory(policy, now=NOW).findings if f.code == "SA202"]
    assert any(m.startswith("direct grant to 'temp': none of the accounts that manage 'temp' (mgr) "
                            "holds customer:read@shared") for m in sa202), sa202


# -- policy tests -----------------------------------------------------------------------------------


TEST_FILE = """\
domain: acme
fixtures:
  accounts:
    dir_w: {department: sales, roles: [director]}
    temp_rep:
      department: west-1
      also_in: [east-1]
      reports_to: dir_w
      roles: [{role: senior_rep, expires: 2099-01-01}]
  records:
    key_account:
      type: customer
      owner: lead_e1
      shares: [{level: read_write, account: rep_w1}, {level: read_only, department: service}]
tests:
  - name: a read_write share lets a rep update
    check: {account: rep_w1, action: update, record: key_account}
    expect: allow
    permission: customer:update@shared
  - name: a read_only share does not
    check: {account: svc_1, action: update, record: key_account}
    expect: deny
  - check: {account: svc_1, action: read, record: {type: customer, owner: lead_e1,
            shares: [{level: read_only, department: service}]}}
    expect: allow
  - check: {account: svc_1, action: read, record: {type: customer, owner: lead_e1}}
    expect: deny
  - who-can: {action: update, type: customer, record: key_account}
    expect: [alice, lead_e1, rep_e1, rep_w1, temp_rep]   # temp_rep: team through also_in
  - who-can: {action: read, type: customer, owner: lead_e1, shares: [{level: read_only, account: svc_1}]}
    expect: [alice, dir_1, lead_e1, rep_e1, svc_1, temp_rep]
  - name: an auxiliary department widens team
    check: {account: temp_rep, action: read, record: {type: customer, owner: rep_e1}}
    expect: allow
    role: senior_rep
  - name: a director sees its report's customers
    who-can: {action: export, type: customer, owner: temp_rep}
    expect: [alice, dir_w]
"""


def _policy_tests(tmp_path: Path, text: str = TEST_FILE) -> Path:
    policy = _copy(tmp_path, "p")
    (policy / "acme.test.yaml").write_text(text, encoding="utf-8")
    return policy


def test_policy_tests_with_shares_and_record_model_fixtures(tmp_path: Path) -> None:
    report = run_tests(_policy_tests(tmp_path), now=NOW)
    assert [r.name for r in report.failures] == [], [(r.name, r.got, r.explanation) for r in report.failures]
    assert len(report.results) == 8
    # The fixture's timed assignment is a p8 rule: counted, and exercised by the case through it.
    assert ("p8", "rep_e1", "senior_rep", "acme", "2027-03-31T00:00:00Z") in report.universe


def test_policy_tests_fail_when_a_share_is_ignored(tmp_path: Path) -> None:
    flipped = TEST_FILE.replace("    permission: customer:update@shared\n", "").replace(
        "a read_write share lets a rep update\n    check: {account: rep_w1, action: update, "
        "record: key_account}\n    expect: allow", "a read_write share lets a rep update\n    check: "
        "{account: rep_w1, action: update, record: key_account}\n    expect: deny")
    report = run_tests(_policy_tests(tmp_path, flipped), now=NOW)
    assert [r.name for r in report.failures] == ["a read_write share lets a rep update"]


@pytest.mark.parametrize(("share", "code", "message"), [
    ("{level: read_wrte, account: rep_w1}", "SA302",
     "unknown share level 'read_wrte' for type 'customer' in domain 'acme' (did you mean 'read_write'?)"),
    ("{level: read_write, account: rep_x1}", "SA302", "unknown account 'rep_x1'"),
    ("{level: read_write, department: servce}", "SA302", "unknown department 'servce'"),
    ("{level: read_write, acount: rep_w1}", "SA301", "acount"),
    ("{level: read_write, account: rep_w1, department: service}", "SA301",
     "a share names exactly one of `account` and `department`"),
])
def test_policy_test_shares_are_checked_at_their_line(tmp_path: Path, share: str, code: str,
                                                       message: str) -> None:
    text = TEST_FILE.replace("shares: [{level: read_write, account: rep_w1}, {level: read_only, "
                             "department: service}]", f"shares: [{share}]")
    with pytest.raises(TestFileError) as caught:
        run_tests(_policy_tests(tmp_path, text), now=NOW)
    findings = caught.value.findings
    assert [f.code for f in findings] == [code]
    assert message in findings[0].message
    assert findings[0].line == 14


def test_a_share_level_on_a_type_without_levels_is_reported(tmp_path: Path) -> None:
    text = TEST_FILE + """\
  - check: {account: rep_w1, action: read, record: {type: order, owner: lead_e1,
            shares: [{level: read_only, account: rep_w1}]}}
    expect: deny
"""
    with pytest.raises(TestFileError) as caught:
        run_tests(_policy_tests(tmp_path, text), now=NOW)
    assert [(f.code, f.line) for f in caught.value.findings] == [("SA302", 40)]
    assert "it declares no share levels" in caught.value.findings[0].message

"""``salesauthz diff``: effective access compared, not rule text."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from salesauthz.checker.cli import main
from salesauthz.checker.diff import diff_directories, diff_sources
from salesauthz.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SENIOR_REP = "  senior_rep:\n    permissions:\n"


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("*.test.yaml"))
    return target


def _edit(directory: Path, old: str, new: str) -> None:
    acme = directory / "acme.yaml"
    text = acme.read_text(encoding="utf-8")
    assert old in text
    acme.write_text(text.replace(old, new), encoding="utf-8")


def test_acceptance_senior_rep_gains_export_at_team(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    new = _copy(tmp_path, "new")
    _edit(new, SENIOR_REP, SENIOR_REP + "      - scope: team\n        customer: [export]\n")
    result = diff_directories(POLICIES, new)
    # rep_w2 holds senior_rep through a timed assignment (until 2030): it gains too. So does
    # mgr_east, which inherits senior_rep: its own export needs a second factor, this one not.
    assert [(c.domain, c.account, c.kind, c.permission) for c in result.changes] == [
        ("acme", "lead_e1", "gain", "customer:export@team"),
        ("acme", "mgr_east", "gain", "customer:export@team+department_tree [mfa]"),
        ("acme", "rep_w2", "gain", "customer:export@team"),
    ]
    assert (result.changes[1].before, result.changes[1].after) == (
        "department_tree [mfa]", "team+department_tree [mfa]")
    assert result.changes[0].records == "records in east-1"
    assert main(["diff", str(POLICIES), str(new), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "+ acme  lead_e1  gains customer:export@team" in out
    assert "3 gains, 0 losses" in out
    assert main(["diff", str(POLICIES), str(new), "--fail-on-gain", "--format", "json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["gains"] == 3
    assert payload["changes"][0]["account"] == "lead_e1"
    # The other way round it is a loss, which --fail-on-gain lets through.
    assert main(["diff", str(new), str(POLICIES), "--fail-on-gain", "--no-color"]) == 0
    assert "- acme  lead_e1  loses customer:export@team" in capsys.readouterr().out
    assert main(["diff", str(new), str(POLICIES), "--fail-on-change"]) == 1


def test_widening_and_narrowing_a_scope(tmp_path: Path) -> None:
    new = _copy(tmp_path, "new")
    _edit(new,
          "  junior_rep:\n    permissions:\n      - scope: own\n        customer: [read, update, create]",
          "  junior_rep:\n    permissions:\n      - scope: team\n        customer: [read]\n"
          "      - scope: own\n        customer: [update, create]")
    _edit(new, "      - scope: all\n        order: [read, create, update]",
          "      - scope: department_tree\n        order: [read, create, update]")
    result = diff_directories(POLICIES, new)
    gains = {(c.account, c.permission, c.before) for c in result.gains}
    # (account-team members also read what is shared with them: that part of the scope stays)
    assert ("rep_e1a", "customer:read@team", "own") in gains
    assert ("rep_w1", "customer:read@shared+team", "own+shared") in gains
    assert not any(c.account in ("gone_1", "frozen_1") for c in result.changes)  # inactive: nothing
    losses = {(c.account, c.permission, c.after) for c in result.losses}
    assert ("ops_1", "order:update@all", "department_tree") in losses
    ops = next(c for c in result.losses if c.permission == "order:update@all")
    assert "records in" in ops.records


def test_domains_and_accounts_appearing(tmp_path: Path) -> None:
    new = _copy(tmp_path, "new")
    (new / "globex.yaml").unlink()
    _edit(new, "  frozen_1:", "  newbie: {department: west, roles: [sales_assistant]}\n  frozen_1:")
    result = diff_directories(POLICIES, new)
    assert {c.account for c in result.losses} == {"g_admin", "g_rep"}
    assert {(c.account, c.permission) for c in result.gains} == {
        ("newbie", "customer:read@team"), ("newbie", "note:create@team")}


def test_no_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    new = _copy(tmp_path, "new")
    # A rule that only repeats what mgr_east already reaches changes nothing effective (with the
    # second factor its export needs: without it, it would be a gain).
    _edit(new, "        order: [approve, read]\n", "        order: [approve, read]\n      - scope: team\n"
                                                      "        requires: {mfa: true}\n"
                                                      "        customer: [export]\n")
    assert main(["diff", str(POLICIES), str(new), "--fail-on-gain", "--no-color"]) == 0
    assert "no change in effective access" in capsys.readouterr().out


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def test_git_revisions(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    policies = _copy(repo, "policies")
    _git(repo, "init", "-q")
    _git(repo, "add", "policies")
    _git(repo, "commit", "-q", "-m", "one")
    _edit(policies, SENIOR_REP, SENIOR_REP + "      - scope: own\n        customer: [export]\n")
    monkeypatch.chdir(repo)
    result = diff_sources("git:HEAD", "policies")
    # (mgr_east inherits senior_rep; its own export needs a second factor, this one not)
    assert [(c.account, c.permission) for c in result.changes] == [
        ("lead_e1", "customer:export@own"), ("mgr_east", "customer:export@own+department_tree [mfa]"),
        ("rep_w2", "customer:export@own")]
    _git(repo, "commit", "-q", "-am", "two")
    assert [c.account for c in diff_sources("git:HEAD~1:policies", "git:HEAD").changes] == [
        "lead_e1", "mgr_east", "rep_w2"]
    assert main(["diff", "git:HEAD~1", "policies", "--fail-on-gain"]) == 1
    capsys.readouterr()


@pytest.mark.parametrize(("old", "message"), [
    ("git:", "name a revision"),
    ("git:nosuchrev", "failed"),
    ("git:HEAD:/", "not inside the git repository"),
    ("missing-dir", "missing-dir does not exist"),
])
def test_bad_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, message: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy(repo, "policies")
    _git(repo, "init", "-q")
    _git(repo, "add", "policies")
    _git(repo, "commit", "-q", "-m", "one")
    monkeypatch.chdir(repo)
    with pytest.raises(UsageError, match=message):
        diff_sources(old, "policies")


def test_git_revision_without_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("x", encoding="utf-8")
    _git(repo, "init", "-q")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "one")
    _copy(repo, "policies")
    monkeypatch.chdir(repo)
    assert main(["diff", "git:HEAD", "policies"]) == 2
    assert "no policy files under policies" in capsys.readouterr().err


def test_broken_side_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "acme.yaml").write_text("domain: acme\naccounts:\n  a: {roles: [nope]}\n", encoding="utf-8")
    assert main(["diff", str(POLICIES), str(broken)]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_an_all_scope_change_says_every_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _copy(tmp_path, "new")
    _edit(new, "      - scope: {custom: [east-2, west]}\n        customer: [read]",
          "      - scope: {custom: [east-2, west]}\n        customer: [read]\n"
          "      - scope: all\n        customer: [export]")
    result = diff_directories(POLICIES, new)
    assert [(c.account, c.permission, c.records) for c in result.changes] == [
        ("analyst_1", "customer:export@all", "every record")]
    assert main(["diff", str(POLICIES), str(new), "--no-color"]) == 0
    assert "+ acme  analyst_1  gains customer:export@all  [every record]" in capsys.readouterr().out


def test_many_departments_are_counted_not_listed(tmp_path: Path) -> None:
    new = _copy(tmp_path, "new")
    # analyst_1 goes from two subtrees to all: what it gains is every other department.
    _edit(new, "      - scope: {custom: [east-2, west]}\n        customer: [read]",
          "      - scope: all\n        customer: [read]")
    (change,) = diff_directories(POLICIES, new).changes
    assert change.records == ("records in east, east-1, ops and 3 more departments; "
                              "records in no department")


def test_a_removed_or_frozen_account_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _copy(tmp_path, "new")
    _edit(new, "  ops_1: {department: ops, roles: [sales_ops]}\n", "")
    _edit(new, "  mgr_east: {department: east, roles: [sales_manager]}",
          "  mgr_east: {department: east, roles: [sales_manager], status: frozen}")
    result = diff_directories(POLICIES, new)
    summaries = {(a.account, a.kind, a.reason, len(a.permissions)) for a in result.accounts}
    assert ("ops_1", "loss", "removed", 4) in summaries
    assert ("mgr_east", "loss", "now frozen", 9) in summaries
    assert ("intern_e1", "loss", "no rights left", 2) in summaries  # capped by its frozen parent
    assert main(["diff", str(POLICIES), str(new), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert ("- acme  ops_1  loses all 4 permissions (removed)  [customer:read@all, order:create@all, "
            "order:read@all and order:update@all]") in out
    assert "- acme  mgr_east  loses all 9 permissions (now frozen)  [account:manage@department_tree, " in out
    assert "and 6 more]" in out
    assert "  ops_1  loses customer" not in out  # no line per permission
    assert out.splitlines()[-1].startswith("0 gains, 15 losses between")  # the totals still count each


def test_a_directory_against_a_live_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    assert main(["import", str(POLICIES), "--into", url]) == 0
    new = _copy(tmp_path, "new")
    (new / "globex.yaml").unlink()  # a directory of one domain: the store's other is left alone
    _edit(new, SENIOR_REP, SENIOR_REP + "      - scope: team\n        customer: [export]\n")
    capsys.readouterr()
    assert main(["diff", "--url", url, str(new), "--no-color", "--fail-on-gain"]) == 1
    out = capsys.readouterr().out
    assert "+ acme  lead_e1  gains customer:export@team  [records in east-1]" in out
    assert f"between {url} and {new}" in out
    assert "g_admin" not in out  # globex: not in the directory, not compared
    # The same, written as two sides, and the other way round.
    assert main(["diff", url, str(new), "--format", "json"]) == 0
    assert [c["account"] for c in json.loads(capsys.readouterr().out)["changes"]] == [
        "lead_e1", "mgr_east", "rep_w2"]  # mgr_east: its own export needs a second factor
    assert main(["diff", str(new), url, "--format", "json"]) == 0
    assert [c["kind"] for c in json.loads(capsys.readouterr().out)["changes"]] == ["loss"] * 3
    # --domain chooses; two stores compare every domain.
    assert main(["diff", url, url, "--domain", "globex"]) == 0
    assert "no change" in capsys.readouterr().out
    assert main(["diff", "--url", url]) == 2
    assert "compare two versions" in capsys.readouterr().err


FIELDS = """    fields:
      customer:
        phone: hidden
        email: hidden
        contract_value: hidden
  customer_service:"""


def test_field_visibility_gained_shows_and_trips_fail_on_gain(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    new = _copy(tmp_path, "new")
    _edit(new, FIELDS, FIELDS.replace("phone: hidden", "phone: visible").replace("email: hidden",
                                                                                  "email: visible"))
    result = diff_directories(POLICIES, new)
    assert result.changes == []  # no record-level change at all
    # The assistants, and the intern holding the same role under mgr_east (who sees both fields).
    assert {(c.account, c.field, c.before, c.after, c.kind) for c in result.fields} == {
        (account, field, "hidden", "visible", "gain")
        for account in ("asst_e1", "asst_east", "intern_e1") for field in ("phone", "email")}
    phone = next(c for c in result.fields if c.field == "phone")
    assert phone.records == "records in east-1"  # what asst_e1 reads: its team's customers
    assert phone.what == "gains sight of"
    assert main(["diff", str(POLICIES), str(new), "--no-color", "--fail-on-gain"]) == 1
    out = capsys.readouterr().out
    assert "+ acme  asst_e1  gains sight of customer.phone (hidden → visible)  [records in east-1]" in out
    assert out.splitlines()[-1].startswith("0 gains, 0 losses; fields: 6 gains, 0 losses between")
    assert main(["diff", str(POLICIES), str(new), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["field_gains"] == 6
    assert {f["field"] for f in payload["fields"]} == {"phone", "email"}
    # The other way round: a loss of sight, which --fail-on-change catches and --fail-on-gain not.
    assert main(["diff", str(new), str(POLICIES), "--fail-on-gain"]) == 0
    assert main(["diff", str(new), str(POLICIES), "--fail-on-change"]) == 1
    capsys.readouterr()


def test_field_write_right_and_own_records(tmp_path: Path) -> None:
    new = _copy(tmp_path, "new")
    # junior reps may now change the contract value (was readonly), on the records they read.
    _edit(new, "    fields:\n      customer:\n        contract_value: readonly\n  sales_manager:",
          "    fields:\n      customer:\n        contract_value: visible\n  sales_manager:")
    fields = diff_directories(POLICIES, new).fields
    changes = {(c.account, c.field, c.before, c.after, c.records) for c in fields}
    assert ("rep_e1a", "contract_value", "readonly", "visible", "records owned by rep_e1a") in changes
    change = next(c for c in diff_directories(POLICIES, new).fields if c.account == "rep_e1a")
    assert change.what == "gains the right to change"
    assert not any(c[0] == "lead_e1" for c in changes)  # its senior_rep rule still says readonly

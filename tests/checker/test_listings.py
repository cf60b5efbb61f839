"""``salesauthz explain``, ``who-can`` and ``what-can``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from salesauthz.checker.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = str(ROOT / "policies")


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The command's JSON output (its values as JSON has them: untyped)."""
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict)
    return data


def test_explain_allow_with_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "mgr_east", "create", "customer", "--owner", "mgr_east", "--domain", "acme",
                 POLICIES, "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ALLOW: allowed by role senior_rep")
    assert "role sales_manager → senior_rep: customer:create@own" in out


def test_explain_deny_by_the_parent_ceiling(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "intern_e1", "create", "note", "--owner", "intern_e1", "--domain", "acme",
                 POLICIES]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DENY: intern_e1 would be allowed, but its parent mgr_east is not")
    assert "capped by what mgr_east may do" in out


def test_explain_json_with_department(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "mgr_east", "read", "customer", "--owner", "rep_w1", "--department", "east-2",
                 "--domain", "acme", POLICIES, "--format", "json"]) == 0
    data = _json(capsys)
    assert data["allowed"] is True
    assert data["role"] == "sales_manager"
    assert data["scope"] == "department_tree"
    assert data["record"] == {"type": "customer", "owner": "rep_w1", "department": "east-2", "shares": []}
    assert ["p", "sales_manager", "acme", "customer", "read", "department_tree", ""] in data["rules"]


def test_explain_defaults_to_the_policies_directory(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["explain", "gone_1", "read", "customer", "--domain", "acme", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["allowed"] is False
    assert "deactivated" in str(data["reason"])


def test_unknown_domain_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "alice", "read", "customer", "--domain", "nowhere", POLICIES]) == 2
    assert "domain 'nowhere' is not in" in capsys.readouterr().err
    assert main(["who-can", "read", "customer", "--domain", "nowhere", POLICIES]) == 2
    assert main(["what-can", "alice", "--domain", "nowhere", POLICIES]) == 2


def test_missing_domain_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["what-can", "alice", POLICIES]) == 2
    assert "--domain" in capsys.readouterr().err


def test_broken_policies_are_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "acme.yaml").write_text("domain: acme\naccounts:\n  a: {roles: [nope]}\n", encoding="utf-8")
    assert main(["what-can", "a", "--domain", "acme", str(tmp_path)]) == 2
    assert "run `salesauthz check" in capsys.readouterr().err


def test_path_and_url_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["what-can", "a", "--domain", "acme", POLICIES, "--url", "memory://"]) == 2
    assert "not both" in capsys.readouterr().err


def test_url_opens_a_store(capsys: pytest.CaptureFixture[str]) -> None:
    # memory:// is an empty store: every domain is unknown.
    assert main(["who-can", "read", "customer", "--domain", "acme", "--url", "memory://"]) == 2
    assert "(domains: none)" in capsys.readouterr().err
    assert main(["review", "--domain", "acme", "--url", "nosuch://x"]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_who_can_lists_every_holder_with_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "read", "customer", "--domain", "acme", POLICIES, "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "17 accounts may customer:read in acme" in out
    assert "analyst_1  custom[east-2, west]" in out
    assert "gone_1" not in out
    assert "frozen_1" not in out


def test_who_can_for_a_record(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "update", "customer", "--owner", "rep_e1b", "--domain", "acme", POLICIES,
                 "--format", "json"]) == 0
    data = _json(capsys)
    assert [row["account"] for row in data["accounts"]] == ["alice", "lead_e1", "mgr_east", "rep_e1b"]
    assert main(["who-can", "update", "customer", "--department", "west-1", "--domain", "acme",
                 POLICIES, "--no-color"]) == 0
    # alice (all) and rep_w2, west-1's stand-in senior rep (team)
    assert "2 accounts may customer:update on a record in west-1" in capsys.readouterr().out
    assert main(["who-can", "read", "customer", "--owner", "rep_e1b", "--domain", "acme",
                 POLICIES, "--no-color"]) == 0
    assert "on a record owned by rep_e1b" in capsys.readouterr().out


def test_who_can_marks_capped_sub_accounts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "domain: acme\nresources:\n  customer: [read]\ndepartments:\n  a: {}\n  b: {}\nroles:\n"
        "  reader:\n    permissions:\n      - scope: team\n        customer: [read]\n"
        "  boss:\n    permissions:\n      - scope: all\n        customer: [read]\naccounts:\n"
        "  top: {department: a, roles: [reader]}\n  kid: {department: b, roles: [boss], parent: top}\n",
        encoding="utf-8")
    assert main(["who-can", "read", "customer", "--domain", "acme", str(tmp_path), "--format", "json"]) == 0
    rows = _json(capsys)["accounts"]
    assert {"account": "kid", "scope": "all", "capped_by": "top"} in rows
    assert main(["what-can", "kid", "--domain", "acme", str(tmp_path), "--no-color"]) == 0
    assert "customer:read@all capped by top" in capsys.readouterr().out


def test_what_can(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["what-can", "intern_e1", "--domain", "acme", POLICIES, "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "intern_e1 may do 2 things in acme" in out
    assert "customer:update@own" in out
    assert main(["what-can", "gone_1", "--domain", "acme", POLICIES]) == 0
    assert "gone_1 is deactivated: it may do nothing" in capsys.readouterr().out
    assert main(["what-can", "ghost", "--domain", "acme", POLICIES]) == 2
    assert "unknown account 'ghost' in domain 'acme'" in capsys.readouterr().err
    assert main(["what-can", "lead_e1", "--domain", "acme", POLICIES, "--format", "json"]) == 0
    data = _json(capsys)
    assert data["status"] == "active"
    assert {"permission": "order:read@team", "type": "order", "action": "read", "scope": "team",
            "capped_by": None, "expiring": [], "until": None,
            "text": "order:read@team"} in data["permissions"]


def test_rich_table_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    from salesauthz.checker.output import Output

    out = Output()
    assert out.console.is_terminal
    out.table(["a", "b"], [["1", "2"]], title="t")
    text = capsys.readouterr().out
    assert "┃" in text or "│" in text


def test_plain_output_without_rich(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rich.console", None)  # as if the `rich` extra were absent
    assert main(["who-can", "export", "customer", "--domain", "acme", POLICIES]) == 0
    assert "mgr_east  department_tree" in capsys.readouterr().out
    assert main(["check", str(ROOT / "tests" / "fixtures" / "mistakes" / "unknown_role")]) == 1
    assert "error SA130: account 'rep_2'" in capsys.readouterr().out
    assert main(["review", "--domain", "globex", POLICIES]) == 0
    assert "g_admin" in capsys.readouterr().out


def test_url_of_a_sqlite_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    assert main(["import", POLICIES, "--into", url]) == 0
    capsys.readouterr()
    assert main(["what-can", "intern_e1", "--domain", "acme", "--url", url, "--format", "json"]) == 0
    rows = _json(capsys)["permissions"]
    assert [row["permission"] for row in rows] == ["customer:read@team", "customer:update@own"]
    assert main(["explain", "rep_e1a", "read", "customer", "--owner", "rep_e1a", "--domain", "acme",
                 "--url", url]) == 0
    assert capsys.readouterr().out.startswith("ALLOW")
    assert main(["review", "--domain", "globex", "--url", url, "--format", "csv"]) == 0
    assert "g_admin" in capsys.readouterr().out
    # The store URL given where the policy directory goes is read as the store (as diff does).
    assert main(["what-can", "intern_e1", "--domain", "acme", url, "--format", "json"]) == 0
    assert [row["permission"] for row in _json(capsys)["permissions"]] == [
        "customer:read@team", "customer:update@own"]
    assert main(["who-can", "read", "customer", "--domain", "acme", url]) == 0
    assert "rep_e1a" in capsys.readouterr().out
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["explain", "a", "read", "customer", "--domain", "acme", missing]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()

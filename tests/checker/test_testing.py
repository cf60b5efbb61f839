"""``salesauthz test``: the test file format, failures with explanations, fixtures, coverage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from salesauthz.checker.cli import main
from salesauthz.checker.output import Output
from salesauthz.checker.testing import TestFileError, render_report, rule_text, run_tests

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of the sample organisation without its tests, to add test files to."""
    target = tmp_path / "policies"
    target.mkdir()
    for name in ("acme.yaml", "globex.yaml", "model.conf"):
        shutil.copy(POLICIES / name, target / name)
    return target


def _write(directory: Path, text: str, name: str = "my.test.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_sample_organisation_passes_with_at_least_90_percent_coverage() -> None:
    report = run_tests(POLICIES)
    assert report.ok, [r.to_json() for r in report.failures]
    assert len(report.results) >= 40
    assert report.coverage >= 90.0
    assert len(report.universe) > 40


def test_main_job_of_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(POLICIES)]) == 0
    assert main(["test", str(POLICIES), "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    assert "coverage: " in out


def test_failures_show_expected_got_and_explanation(policies: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _write(policies, """\
domain: acme
tests:
  - name: wrong verdict
    check: {account: rep_e1a, action: read, record: {type: customer, owner: rep_e1b}}
    expect: allow
  - name: wrong role
    check: {account: lead_e1, action: read, record: {type: customer, owner: rep_e1b}}
    expect: allow
    role: junior_rep
  - name: wrong permission
    check: {account: lead_e1, action: read, record: {type: customer, owner: rep_e1b}}
    expect: allow
    permission: customer:read@own
  - name: grant expected, role decided
    check: {account: lead_e1, action: read, record: {type: customer, owner: rep_e1b}}
    expect: allow
    role: grant
  - name: not exhaustive
    who-can: {action: export, type: customer}
    expect: [alice, lead_e1]
  - name: what-can missing one
    what-can: {account: asst_e1}
    expect: [customer:read@team]
  - name: passes
    check: {account: intern_e1, action: update, record: {type: customer, owner: intern_e1}}
    expect: allow
    role: grant
    permission: customer:update@own
""")
    assert main(["test", str(policies), "--no-color", "-v"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert "my.test.yaml:3: wrong verdict" in out
    assert "expected: allow\n" in out
    assert "got:      deny\n" in out
    assert "does not reach a customer record owned by rep_e1b" in out  # the explanation
    assert "expected: allow by role junior_rep" in out
    assert "got:      allow by role senior_rep with customer:read@team" in out
    assert "expected: allow with customer:read@own" in out
    assert "expected: allow by a direct grant" in out
    assert "unexpected: mgr_east" in out
    assert "missing: lead_e1" in out
    assert "missing: note:create@team" not in out
    assert "unexpected: note:create@team" in out
    assert "PASS" in out
    assert "passes" in out
    assert "1 passed, 6 failed" in out


def test_json_report_with_coverage(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(policies, """\
domain: globex
tests:
  - check: {account: g_rep, action: read, record: {type: customer, owner: g_rep}}
    expect: allow
""")
    assert main(["test", str(policies), "--format", "json", "--coverage"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert payload["passed"] == 1
    coverage = payload["coverage"]
    assert 0 < coverage["percent"] < 10
    assert coverage["exercised"] == 2  # the p rule and g_rep's assignment of junior_rep
    assert ["g", "g_rep", "junior_rep", "globex"] not in coverage["unexercised"]
    assert ["p", "junior_rep", "globex", "customer", "read", "own", ""] not in coverage["unexercised"]
    assert ["g", "alice", "admin", "acme"] in coverage["unexercised"]


def test_coverage_lists_unexercised_rules(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(policies, """\
domain: acme
tests:
  - check: {account: mgr_east, action: create, record: {type: customer, owner: mgr_east}}
    expect: allow
    role: senior_rep
""")
    assert main(["test", str(policies), "--coverage", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "never exercised" in out
    assert "not exercised: acme: alice → role admin" in out
    assert "not exercised: acme: sales_manager → role senior_rep" not in out  # on the path
    assert "not exercised: acme: mgr_east → role sales_manager" not in out


def test_fixtures_accounts_and_records(policies: Path) -> None:
    _write(policies, """\
domain: acme
fixtures:
  accounts:
    temp: {department: west-1, roles: [senior_rep], parent: mgr_east}
  records:
    west: {type: customer, owner: rep_w1}
tests:
  - name: the ceiling of mgr_east stops a west sub-account
    check: {account: temp, action: read, record: west}
    expect: deny
  - who-can: {action: read, type: customer, record: west}
    expect: [alice, analyst_1, cs_1, dir_sales, ops_1, rep_w1, rep_w2]
  - name: only its own records filed in east survive the ceiling; create@own not at all
    what-can: {account: temp}
    expect:
      - customer:read@team capped by mgr_east
      - customer:update@team capped by mgr_east
      - order:create@team capped by mgr_east
      - order:read@team capped by mgr_east
""")
    report = run_tests(policies)
    assert report.ok, [r.to_json() for r in report.failures]
    # The fixture exists only for its own file: another file does not see it.
    _write(policies, """\
domain: acme
tests:
  - what-can: {account: temp}
    expect: []
""", "other.test.yaml")
    with pytest.raises(TestFileError, match=r"other\.test\.yaml:3:.*unknown account 'temp'"):
        run_tests(policies)
    _write(policies, """\
domain: acme
tests:
  - what-can: {account: temp}
    expect: []
    unknown: [temp]
""", "other.test.yaml")
    assert run_tests(policies).ok


@pytest.mark.parametrize(("text", "message"), [
    ("domain: acme\ntests:\n  - expect: allow\n", "exactly one of check, who-can, what-can"),
    ("domain: acme\ntests:\n  - what-can: {account: a}\n    expect: allow\n", "expects a list"),
    ("domain: acme\ntests:\n  - check: {account: a, action: read, record: {type: customer}}\n"
     "    expect: [a]\n", "expects `allow` or `deny`"),
    ("domain: acme\ntests:\n  - what-can: {account: a}\n    expect: []\n    role: admin\n",
     "belong to check cases"),
    ("tests:\n  - what-can: {account: a}\n    expect: []\n", "no domain"),
    ("fixtures:\n  accounts:\n    x: {}\ntests: []\n", "need the file's `domain:`"),
    ("domain: acme\ntests:\n  - check: {account: a, action: read}\n    expect: allow\n", "record"),
    ("domain: acme\ntests:\n  - bogus: 1\n    expect: allow\n", "unknown key 'bogus'"),
    ("domain: acme\ntests: [\n", "invalid YAML"),
    ("domain: nowhere\nfixtures:\n  accounts:\n    x: {}\ntests: []\n", "policies do not define"),
    ("domain: acme\nfixtures:\n  accounts:\n    x: {roles: [nope]}\ntests: []\n", "unknown role 'nope'"),
    ("domain: acme\nfixtures:\n  accounts:\n    alice: {}\ntests: []\n", "already exists"),
])
def test_malformed_test_files_are_exit_2_with_location(policies: Path, capsys: pytest.CaptureFixture[str],
                                                       text: str, message: str) -> None:
    _write(policies, text)
    assert main(["test", str(policies), "--no-color"]) == 2
    out = capsys.readouterr().out
    assert message in out
    assert "my.test.yaml" in out
    with pytest.raises(TestFileError, match=r"my\.test\.yaml"):
        run_tests(policies)


def test_unknown_named_record_fails_the_case(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(policies, """\
domain: acme
tests:
  - check: {account: alice, action: read, record: ghost}
    expect: allow
  - who-can: {action: read, type: customer, record: ghost}
    expect: []
""")
    assert main(["test", str(policies), "--no-color"]) == 1
    assert capsys.readouterr().out.count("unknown record 'ghost'") == 2


def test_an_unknown_domain_passes_only_when_the_case_says_so(policies: Path) -> None:
    text = """\
domain: nowhere
tests:
  - check: {account: alice, action: read, record: {type: customer, owner: alice}}
    expect: deny
  - who-can: {action: read, type: customer}
    expect: []
  - what-can: {account: alice}
    expect: []
"""
    _write(policies, text)
    with pytest.raises(TestFileError) as caught:
        run_tests(policies)
    # One error, at the file's `domain:` line, not one per case.
    assert [(f.code, f.line, f.message) for f in caught.value.findings] == [
        ("SA302", 1, "unknown domain 'nowhere'")]
    assert caught.value.findings[0].hint is not None
    assert "the policies define acme, globex" in caught.value.findings[0].hint
    _write(policies, text.replace("expect: deny", "expect: deny\n    unknown: [nowhere]")
           .replace("expect: []", "expect: []\n    unknown: [nowhere]"))
    assert run_tests(policies).ok


def test_policy_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "acme.yaml").write_text("domain: acme\naccounts:\n  a: {roles: [nope]}\n", encoding="utf-8")
    assert main(["test", str(tmp_path)]) == 1
    assert "SA130" in capsys.readouterr().out
    assert main(["test", str(tmp_path), "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"][0]["code"] == "SA130"


def test_no_tests_and_no_directory(policies: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(policies)]) == 2
    assert "no policy tests" in capsys.readouterr().out
    assert main(["test", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().out


def test_unreadable_test_file(policies: Path) -> None:
    (policies / "bad.test.yaml").write_bytes(b"domain: caf\xe9\n")
    with pytest.raises(TestFileError, match=r"bad\.test\.yaml:1:12: not UTF-8"):
        run_tests(policies)


def test_empty_test_file_has_no_cases(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(policies, "")
    report = run_tests(policies)
    assert not report.ok  # no case at all is not a pass
    render_report(report, Output(no_color=True), coverage=True)
    assert "0 passed, 0 failed" in capsys.readouterr().out


def test_rule_text() -> None:
    assert rule_text(("p", "bob", "acme", "customer", "read", "own", "2030-01-01T00:00:00Z")) == \
        "acme: bob holds customer:read@own until 2030-01-01T00:00:00Z"
    assert rule_text(("g", "bob", "rep", "acme")) == "acme: bob → role rep"


# -- unknown names (SA302) ----------------------------------------------------------------

_CHECK = "  - check: {account: %s, action: %s, record: {type: %s, owner: %s}}\n    expect: deny\n"


@pytest.mark.parametrize(("case", "line", "message", "name"), [
    (_CHECK % ("rep_e1aa", "read", "customer", "rep_e1a"), 3,
     "unknown account 'rep_e1aa' in domain 'acme' (did you mean 'rep_e1a'?)", "rep_e1aa"),
    (_CHECK % ("rep_e1a", "raed", "customer", "rep_e1a"), 3,
     "unknown action 'raed' for type 'customer' in domain 'acme' (did you mean 'read'?)", "raed"),
    (_CHECK % ("rep_e1a", "read", "customers", "rep_e1a"), 3,
     "unknown type 'customers' in domain 'acme' (did you mean 'customer'?)", "customers"),
    (_CHECK % ("rep_e1a", "read", "customer", "rep_e9"), 3,
     "unknown account 'rep_e9' in domain 'acme' (did you mean 'rep_e2'?)", "rep_e9"),
    ("  - check: {account: rep_e1a, action: read, record: {type: customer, department: east-11}}\n"
     "    expect: deny\n", 3, "unknown department 'east-11' in domain 'acme' (did you mean 'east-1'?)",
     "east-11"),
    ("  - check: {account: rep_e1a, action: read, record: {type: customer, owner: rep_e1a}}\n"
     "    expect: allow\n    role: junior_rep_x\n", 5,
     "unknown role 'junior_rep_x' in domain 'acme' (did you mean 'junior_rep'?)", "junior_rep_x"),
    ("  - check: {account: rep_e1a, action: read, record: {type: customer, owner: rep_e1a}, "
     "domain: acmee}\n    expect: deny\n", 3, "unknown domain 'acmee' (did you mean 'acme'?)", "acmee"),
    ("  - who-can: {action: exprot, type: customer}\n    expect: []\n", 3,
     "unknown action 'exprot' for type 'customer'", "exprot"),
    ("  - who-can: {action: read, type: tickets}\n    expect: []\n", 3,
     "unknown type 'tickets' in domain 'acme' (did you mean 'ticket'?)", "tickets"),
    ("  - who-can: {action: read, type: customer, owner: bobby}\n    expect: []\n", 3,
     "unknown account 'bobby' in domain 'acme'", "bobby"),
    ("  - who-can: {action: read, type: customer, department: wests}\n    expect: []\n", 3,
     "unknown department 'wests' in domain 'acme' (did you mean 'west'?)", "wests"),
    ("  - what-can: {account: g_rep}\n    expect: []\n", 3, "unknown account 'g_rep' in domain 'acme'",
     "g_rep"),
])
def test_an_unknown_name_is_an_error_unless_the_case_says_so(
        policies: Path, capsys: pytest.CaptureFixture[str], case: str, line: int, message: str,
        name: str) -> None:
    path = _write(policies, "domain: acme\ntests:\n" + case)
    assert main(["test", str(policies), "--no-color"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:{line}:" in out
    assert f"error SA302: {message}" in out
    assert f"unknown: [{name}]" in out  # the hint says how to opt in
    with pytest.raises(TestFileError) as caught:
        run_tests(policies)
    assert [f.code for f in caught.value.findings] == ["SA302"]
    # A deliberate unknown name: the case runs (and passes, or fails on its merits).
    _write(policies, "domain: acme\ntests:\n" + case + f"    unknown: [{name}]\n")
    report = run_tests(policies)
    assert len(report.results) == 1


def test_a_name_of_another_domain_says_so(policies: Path) -> None:
    _write(policies, "domain: globex\ntests:\n" + _CHECK % ("alice", "read", "customer", "g_rep"))
    with pytest.raises(TestFileError) as caught:
        run_tests(policies)
    [finding] = caught.value.findings
    assert finding.message == "unknown account 'alice' in domain 'globex'"
    assert finding.hint is not None
    assert finding.hint.startswith("'alice' is in domain 'acme', but nothing crosses domains")


def test_named_records_are_checked_where_they_are_defined(policies: Path) -> None:
    path = _write(policies, """\
domain: acme
fixtures:
  records:
    ghost_deal: {type: customer, owner: ghost, department: nowhere}
    unused: {type: nothing}
tests:
  - check: {account: alice, action: read, record: ghost_deal}
    expect: deny
  - who-can: {action: read, type: customer, record: ghost_deal}
    expect: []
""")
    with pytest.raises(TestFileError) as caught:
        run_tests(policies)
    # Reported once each, at the record's own line, though two cases use it; `unused` is not.
    assert [(f.file, f.line, f.message) for f in caught.value.findings] == [
        (str(path), 4, "unknown account 'ghost' in domain 'acme'"),
        (str(path), 4, "unknown department 'nowhere' in domain 'acme'"),
    ]


def test_fixture_accounts_are_known_in_their_file(policies: Path) -> None:
    _write(policies, """\
domain: acme
fixtures:
  accounts:
    temp: {department: east-1, roles: [junior_rep]}
tests:
  - check: {account: temp, action: read, record: {type: customer, owner: temp}}
    expect: allow
""")
    assert run_tests(policies).ok


def test_a_stale_opt_in_is_an_error(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(policies, "domain: acme\ntests:\n" + _CHECK % ("alice", "read", "customer", "rep_e1a")
                  + "    unknown: [alice, ghost]\n")
    assert main(["test", str(policies), "--no-color", "--format", "json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [(e["code"], e["line"]) for e in errors] == [("SA302", 5), ("SA302", 5)]
    assert errors[0]["message"] == "'alice' is listed under unknown: but the case uses no unknown name " \
        "by that spelling"
    assert errors[0]["file"] == str(path)
    assert "'ghost' is listed under unknown:" in errors[1]["message"]


def test_a_deliberately_unknown_domain_skips_the_other_names(policies: Path) -> None:
    _write(policies, """\
domain: acme
tests:
  - check: {account: nobody, action: fly, record: {type: dragon, owner: nobody}, domain: elsewhere}
    expect: deny
    unknown: [elsewhere]
""")
    report = run_tests(policies)
    assert report.ok

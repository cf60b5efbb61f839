"""``salesauthz check``: the mistakes corpus, the sample organisation, strictness, output formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from salesauthz.checker.cli import main
from salesauthz.checker.findings import CODES, LOADER_CODES, Finding, title_of
from salesauthz.checker.lint import check_directory
from salesauthz.errors import PolicyIssue

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
MISTAKES = ROOT / "tests" / "fixtures" / "mistakes"
CASES = sorted(p.name for p in MISTAKES.iterdir() if p.is_dir())
NOW = 1_800_000_000.0  # 2027-01-15: fixed, so grant expiry in the corpus does not drift


def _expected(case: str) -> dict[str, str]:
    lines = (MISTAKES / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split(": ", 1) for line in lines)


def test_corpus_is_large_and_covers_the_required_mistakes() -> None:
    assert len(CASES) >= 25
    for required in ("sub_account_exceeds_by_scope", "sub_account_exceeds_by_inherited_permission",
                     "role_cycle_through_three_roles", "subsumed_permission",
                     "deactivated_account_with_sub_account"):
        assert required in CASES
    assert set(CODES) <= {_expected(case)["code"] for case in CASES}  # every lint has a case


@pytest.mark.parametrize("case", CASES)
def test_each_mistake_yields_exactly_its_finding(case: str) -> None:
    expected = _expected(case)
    result = check_directory(MISTAKES / case, now=NOW)
    assert [(f.code, f.line, f.severity) for f in result.findings] == [
        (expected["code"], int(expected["line"]), expected["severity"])
    ], [str(f) for f in result.findings]
    finding = result.findings[0]
    assert finding.file is not None
    assert finding.file.endswith(expected["file"])
    assert finding.column is not None
    assert expected["message"] in finding.message + " " + (finding.hint or "")
    if finding.code in CODES:
        assert finding.hint, "every lint says what to do"


def test_the_sample_organisation_has_no_errors() -> None:
    result = check_directory(POLICIES)
    assert result.loaded is not None
    assert result.errors == []
    # Its warnings are real: the intern's note:create is dead under mgr_east, and two
    # inactive accounts keep their role (the sample keeps them to show they are denied).
    assert {f.code for f in result.warnings} <= {"SA201", "SA207"}
    for finding in result.warnings:
        assert any(name in finding.message for name in ("intern_e1", "gone_1", "frozen_1")), finding


def test_strict_turns_warnings_into_errors(capsys: pytest.CaptureFixture[str]) -> None:
    case = MISTAKES / "role_never_assigned"
    assert main(["check", str(case), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "warning SA205" in out
    assert "0 errors, 1 warning" in out
    assert main(["check", str(case), "--strict", "--no-color"]) == 1
    assert "error SA205" in capsys.readouterr().out


def test_errors_exit_1_and_show_hints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(MISTAKES / "role_from_other_domain")]) == 1
    out = capsys.readouterr().out
    assert "acme.yaml:28:" in out
    assert "error SA130" in out
    assert "hint: 'globex_rep' exists in domain 'globex'" in out


def test_clean_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "acme.yaml").write_text(
        "domain: acme\nresources:\n  customer: [read]\ndepartments:\n  sales: {}\nroles:\n  admin:\n"
        "    permissions:\n      - scope: all\n        '*': ['*']\naccounts:\n"
        "  alice: {department: sales, roles: [admin]}\n", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 0
    assert "ok: 1 domain," in capsys.readouterr().out


def test_missing_directory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope")]) == 2
    out = capsys.readouterr().out
    assert f"{tmp_path / 'nope'} does not exist" in out
    assert "not a directory" not in out
    (tmp_path / "acme.yaml").write_text("domain: acme\n", encoding="utf-8")
    assert main(["check", str(tmp_path / "acme.yaml")]) == 2
    out = capsys.readouterr().out
    assert f"{tmp_path / 'acme.yaml'} is not a directory" in out
    assert "not a file in it" in out  # the hint: pass the directory, not one of its files


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(MISTAKES / "subsumed_permission"), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False
    assert payload["warnings"] == 1
    assert payload["errors"] == 0
    [finding] = payload["findings"]
    assert finding["code"] == "SA204"
    assert finding["line"] == int(_expected("subsumed_permission")["line"])


def test_sarif_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    case = "tests/fixtures/mistakes/unknown_action"
    assert main(["check", case, "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["SA153"]
    [result] = run["results"]
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == f"{case}/acme.yaml"
    assert location["region"]["startLine"] == int(_expected("unknown_action")["line"])


def test_sarif_without_location_and_outside_cwd() -> None:
    from salesauthz.checker.output import sarif_report

    log = sarif_report([Finding("SA100", "error", "bad rule"),
                        Finding("SA107", "error", "no dir", "/elsewhere/x")], Path("/work-nowhere"))
    results = log["runs"][0]["results"]
    assert "locations" not in results[0]
    assert results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "/elsewhere/x"
    assert "region" not in results[1]["locations"][0]["physicalLocation"]


def test_suppression_comments(tmp_path: Path) -> None:
    target = tmp_path / "policies"
    shutil.copytree(MISTAKES / "role_never_assigned", target)
    (target / "expected.txt").unlink()
    acme = target / "acme.yaml"
    text = acme.read_text(encoding="utf-8")
    acme.write_text(text.replace("# <-- SA205", "# salesauthz: ignore[SA204, SA205]"), encoding="utf-8")
    result = check_directory(target)
    assert result.findings == []
    assert result.suppressed == 1
    acme.write_text(text.replace("  auditor:  # <-- SA205", "  # salesauthz: ignore\n  auditor:"),
                    encoding="utf-8")
    assert check_directory(target).findings == []
    acme.write_text(text.replace("# <-- SA205", "# salesauthz: ignore[SA201]"), encoding="utf-8")
    assert [f.code for f in check_directory(target).findings] == ["SA205"]


def test_summary_line_counts_suppressed_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "policies"
    shutil.copytree(MISTAKES / "role_never_assigned", target)
    (target / "expected.txt").unlink()
    acme = target / "acme.yaml"
    text = acme.read_text(encoding="utf-8")
    acme.write_text(text.replace("# <-- SA205", "# salesauthz: ignore[SA205]"), encoding="utf-8")
    assert main(["check", str(target)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(", no findings (1 suppressed)")
    # With a finding left, the other summary line counts them too.
    (target / "more.yaml").write_text(
        "domain: globex\ndepartments: {d: {}}\nroles: {r: {}}\naccounts: {a: {department: d}}\n",
        encoding="utf-8")
    assert main(["check", str(target)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"0 errors, 1 warning in {target} (1 suppressed)"
    assert main(["check", str(POLICIES)]) == 0  # SA201, 2 x SA207, SA214 (the admin's export)
    assert capsys.readouterr().out.splitlines()[-1].endswith("no findings (4 suppressed)")


def test_every_code_has_a_title_and_docs() -> None:
    docs = (ROOT / "docs" / "checker.md").read_text(encoding="utf-8")
    for code in [*CODES, *LOADER_CODES]:
        assert title_of(code)
        assert f"### {code}" in docs, code
    assert title_of("SA999") == "policy problem"


def test_finding_from_issue_and_location() -> None:
    finding = Finding.from_issue(PolicyIssue("m", "f.yaml", 3, 4, "h", "SA205"))
    assert finding.severity == "warning"
    assert finding.location() == "f.yaml:3:4"
    assert finding.escalated().severity == "error"
    assert Finding.from_issue(PolicyIssue("m", code="SA130")).severity == "error"
    assert Finding("SA100", "error", "m").location() == "<rules>"

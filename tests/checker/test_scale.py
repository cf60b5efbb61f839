"""``salesauthz check`` on a large organisation: a summary by code, a capped list of findings
(each code in turn), and findings whose lists stay short whatever the size of the tenant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from salesauthz.checker.cli import TEXT_MAX_FINDINGS, main
from salesauthz.checker.findings import Finding, by_code, select
from salesauthz.checker.lint import check_directory

DEPARTMENTS = 40
FROZEN = 120


def _organisation(directory: Path) -> Path:
    """A tenant with many findings of a few codes: frozen accounts that keep their roles
    (SA207), sub-accounts whose role reaches every department while the parent's reaches its own
    (SA201, one per sub-account), and a role never assigned (SA205)."""
    lines = ["domain: big", "resources:", "  customer: [read, update, export]", "departments:",
             "  hq: {}"]
    lines += [f"  d{i:02}: {{parent: hq}}" for i in range(DEPARTMENTS)]
    lines += ["roles:",
              "  admin:", "    permissions:", "      - scope: all", "        '*': ['*']",
              "  manager:", "    permissions:", "      - scope: department_tree",
              "        customer: [read, update]", "        account: [manage]",
              "  analyst:", "    permissions:", "      - scope: all",
              "        customer: [read, update, export]",
              "  unused: {}",
              "accounts:", "  root: {department: hq, roles: [admin]}"]
    for i in range(DEPARTMENTS):
        lines.append(f"  boss{i}: {{department: d{i:02}, roles: [manager]}}")
        lines.append(f"  helper{i}: {{department: d{i:02}, parent: boss{i}, roles: [analyst]}}")
    lines += [f"  gone{i}: {{department: d00, roles: [manager], status: frozen}}" for i in range(FROZEN)]
    directory.mkdir()
    (directory / "big.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _organisation(tmp_path_factory.mktemp("scale") / "big")


def test_findings_name_one_place_each_with_capped_lists(big: Path) -> None:
    result = check_directory(big)
    counts = {code: n for code, _, n in by_code(result.findings)}
    assert counts == {"SA207": FROZEN, "SA201": DEPARTMENTS, "SA205": 1}
    sa201 = next(f for f in result.findings if f.code == "SA201")
    # One finding for the role assignment that is dead, naming its permissions and capping them.
    assert sa201.message.startswith("sub-account 'helper0' holds 3 permissions (through role 'analyst') "
                                    "beyond its parent chain (boss0): ")
    assert "; and 1 more permission — the ceiling denies them" in sa201.message
    # The records beyond the parent's department_tree: 40 departments, three of them named.
    assert "records in d01, d02, d03 and 37 more departments" in sa201.message
    assert max(len(f.message) for f in result.findings) < 600


def test_text_output_is_capped_with_a_summary_by_code(big: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(big), "--no-color"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    shown = [line for line in lines if " warning SA" in line]
    assert len(shown) == TEXT_MAX_FINDINGS
    # Each code in turn: the rare SA205 is not buried under 120 SA207s.
    assert {line.split(" warning ")[1][:5] for line in shown} == {"SA201", "SA205", "SA207"}
    total = FROZEN + DEPARTMENTS + 1
    assert f"… and {total - TEXT_MAX_FINDINGS} more findings not shown" in out
    assert "  SA207        120 warnings  frozen or deactivated account still holding roles or grants" in lines
    assert "  SA205          1 warning   role never assigned" in lines
    assert lines[-1] == f"0 errors, {total} warnings in {big}"
    assert main(["check", str(big), "--max-findings", "0", "--no-color"]) == 0
    assert capsys.readouterr().out.count(" warning SA") == total
    assert main(["check", str(big), "--max-findings", "3", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.count(" warning SA") == 3
    assert "SA201  " in out  # the summary still counts every code


def test_json_is_complete_unless_capped(big: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(big), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["findings"]) == payload["warnings"] == FROZEN + DEPARTMENTS + 1
    assert payload["omitted"] == 0
    assert payload["by_code"] == {"SA207": FROZEN, "SA201": DEPARTMENTS, "SA205": 1}
    assert main(["check", str(big), "--format", "json", "--max-findings", "5"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["findings"]) == 5
    assert payload["omitted"] == FROZEN + DEPARTMENTS + 1 - 5
    assert main(["check", str(big), "--format", "sarif", "--max-findings", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"][0]["results"]) == 2


def test_max_findings_must_be_a_count(big: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(big), "--max-findings", "-1"]) == 2
    assert "expected 0 or more" in capsys.readouterr().err
    assert main(["check", str(big), "--max-findings", "many"]) == 2
    assert "expected a whole number" in capsys.readouterr().err


def test_select_gives_each_code_its_turn_errors_first() -> None:
    findings = [Finding("SA207", "warning", f"w{i}", "a.yaml", i) for i in range(1, 10)]
    findings += [Finding("SA205", "warning", "rare", "a.yaml", 50),
                 Finding("SA130", "error", "bad", "b.yaml", 1)]
    picked = select(findings, 3)
    assert [f.code for f in picked] == ["SA207", "SA205", "SA130"]  # file order, each code once
    assert select(findings, 0) == findings
    assert select(findings, 100) == findings
    assert [f.message for f in select(findings, 5)] == ["w1", "w2", "w3", "rare", "bad"]
    assert by_code(findings)[0] == ("SA130", "error", 1)  # errors first, then the most frequent
    assert by_code(findings)[1] == ("SA207", "warning", 9)

"""``salesauthz review``: the access-review report, in every format; the HTML renders."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from salesauthz.checker.cli import main
from salesauthz.checker.listings import open_source
from salesauthz.checker.review import FLAGS, build_review, render_review, review_snapshot

ROOT = Path(__file__).resolve().parents[2]
POLICIES = str(ROOT / "policies")

GRANTS = """\
domain: acme
resources:
  customer: [read, update]
departments:
  sales: {}
roles:
  admin:
    permissions:
      - scope: all
        "*": ["*"]
  rep:
    permissions:
      - scope: own
        customer: [read]
accounts:
  alice: {department: sales, roles: [admin]}
  temp:
    department: sales
    roles: [rep]
    grants:
      - scope: team
        expires: 2030-01-20T00:00:00Z
        customer: [update]
  old:
    department: sales
    grants:
      - scope: team
        expires: 2020-01-01T00:00:00Z
        customer: [update]
"""


def test_sample_review_sorted_by_risk_with_flags() -> None:
    review = build_review(open_source(POLICIES, None), "acme")
    rows = {row.account: row for row in review.rows}
    assert review.rows[0].account == "alice"
    # The sample's exports need a second factor: the admin's wildcard exports without one (it is
    # flagged), mgr_east's export has requires: {mfa: true} (it is not).
    assert rows["alice"].flags == ["escalate", "all-scope", "manages-accounts", "export-without-mfa"]
    assert rows["mgr_east"].flags == ["manages-accounts"]
    assert rows["gone_1"].flags == ["inactive-with-rights"]
    assert rows["gone_1"].permissions == []
    assert rows["intern_e1"].flags == ["direct-grants", "at-parent-ceiling"]
    assert rows["cs_1"].flags == ["all-scope"]
    assert rows["rep_e1a"].flags == []
    assert rows["svc_e1"].flags == ["department-grants"]  # the east service desk's sharing rule
    assert "customer:read@shared+custom[east]" in rows["svc_e1"].permissions
    risks = [row.risk for row in review.rows]
    assert risks == sorted(risks, reverse=True)
    assert len(review.rows) == 19


def test_expiring_grants(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(GRANTS, encoding="utf-8")
    source = open_source(str(tmp_path), None)
    index = source.snapshot("acme")
    soon = 1_894_000_000.0  # 2030-01-08: twelve days before temp's grant expires
    rows = {row.account: row for row in review_snapshot(index, soon)}
    assert "expiring-soon" in rows["temp"].flags
    assert "direct-grants" in rows["temp"].flags
    assert rows["old"].flags == []  # its only grant has expired
    later = {row.account: row for row in review_snapshot(index, 1_700_000_000.0)}
    assert "expiring-soon" not in later["temp"].flags


def test_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["review", POLICIES, "--domain", "acme"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("# Access review: acme")
    assert "| 115 | alice | active | sales |" in markdown  # 100 + 15 for export-without-mfa
    assert main(["review", POLICIES, "--domain", "acme", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["account"] == "alice"
    assert {r["account"] for r in rows if "inactive-with-rights" in r["flags"]} == {"gone_1", "frozen_1"}
    assert main(["review", POLICIES, "--domain", "globex", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [a["account"] for a in payload["accounts"]] == ["g_admin", "g_rep"]
    assert set(payload["flags"]) == set(FLAGS)
    target = tmp_path / "review.html"
    assert main(["review", POLICIES, "--domain", "acme", "--format", "html", "-o", str(target)]) == 0
    assert "wrote" in capsys.readouterr().err
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "src=", "http://", "https://"):
        assert external not in html  # one self-contained file
    assert "inactive-with-rights" in html


def test_markdown_escapes_hostile_names(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        'domain: acme\nresources:\n  customer: [read]\ndepartments:\n  "a|b": {}\naccounts:\n'
        '  "<b>x|y</b>": {department: "a|b"}\n', encoding="utf-8")
    review = build_review(open_source(str(tmp_path), None), "acme")
    assert "<b>x\\|y</b>" in render_review(review, "md")
    assert "&lt;b&gt;x|y&lt;/b&gt;" in render_review(review, "html")


def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not on PATH (CI installs it in .ci/run)")
    report = tmp_path / "review.html"
    assert main(["review", POLICIES, "--domain", "acme", "--format", "html", "-o", str(report)]) == 0
    screenshot = tmp_path / "review.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,900",
         report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # a rendered table, not a blank page


def test_the_report_shows_field_visibility() -> None:
    review = build_review(open_source(POLICIES, None), "acme")
    rows = {row.account: row for row in review.rows}
    assert rows["alice"].fields == ["customer: every field visible"]
    assert rows["asst_e1"].fields == ["customer.contract_value: hidden", "customer.email: hidden",
                                      "customer.phone: hidden", "customer: other fields visible"]
    # A record-conditional rule: the senior rep sees the phone of its own customers only.
    assert rows["lead_e1"].fields == [
        "customer.contract_value: readonly",
        "customer.phone: hidden on records in east-1, visible on records owned by lead_e1",
        "customer: other fields visible"]
    assert rows["gone_1"].fields == []  # it reads nothing
    payload = json.loads(render_review(review, "json"))
    assert next(a for a in payload["accounts"] if a["account"] == "asst_e1")["fields"][0] == \
        "customer.contract_value: hidden"
    table = list(csv.reader(io.StringIO(render_review(review, "csv"))))
    assert table[0][-1] == "fields"
    assert "customer.phone: hidden" in next(r for r in table if r[1] == "asst_e1")[-1]
    assert "| fields |" in render_review(review, "md")
    assert "<th>fields</th>" in render_review(review, "html")
    assert "customer.phone: hidden on records in east-1, visible on records owned by lead_e1" in \
        render_review(review, "html")

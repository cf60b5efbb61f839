"""Both HTML pages of an access review — the report (``review --format html``) and a campaign's
reviewer page (``review start``) — show, for each account, every permission in plain words,
every flag with its risk weight and what the account sees of the ruled fields; escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from salesauthz.checker.campaign import CLEANUP_FLAGS, start_campaign
from salesauthz.checker.cli import main
from salesauthz.checker.review import FLAGS

HOSTILE = "<b>x&y</b>"

ORG = f"""\
domain: acme
resources:
  customer: [read, update, export]
fields:
  customer: [name, phone]
departments:
  sales: {{}}
  east: {{parent: sales}}
roles:
  admin:
    permissions:
      - scope: all
        "*": ["*"]
  rep:
    permissions:
      - scope: own
        customer: [read, update]
    fields:
      customer:
        phone: hidden
accounts:
  alice: {{department: sales, roles: [admin]}}
  rep_e:
    department: east
    reports_to: alice
    roles: [rep]
    grants:
      - scope: team
        customer: [export]
  "{HOSTILE}": {{department: east, reports_to: alice, roles: [rep]}}
"""

# rep_e, in plain words: its own records (the role) and its team's (the direct grant).
PLAIN = ["may read customer records — on its own records",
         "may update customer records — on its own records",
         "may export customer records — on its own records and records in east"]
FIELDS = "customer.phone: hidden"
# rep_e's flags: a direct grant; alice's: escalate, all-scope, manages-accounts.
WEIGHTED = {flag: FLAGS[flag][0] for flag in ("direct-grants", "escalate", "all-scope", "manages-accounts")}


@pytest.fixture
def org(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "acme.yaml").write_text(ORG, encoding="utf-8")
    return directory


def _text(page: str) -> str:
    """The page as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _row(page: str, account: str) -> str:
    """The report's table row of ``account``."""
    found: list[str] = [r for r in re.findall(r"<tr.*?</tr>", page) if f"<td>{account}</td>" in r]
    assert len(found) == 1, account
    return found[0]


def _assert_weights(page: str) -> None:
    for flag, weight in WEIGHTED.items():
        assert re.search(rf">{re.escape(flag)} <b class=\"weight\">\+{weight}</b></span>", page), flag
        assert f"<dt>{flag} (weight {weight})</dt>" in page, flag


def test_report_page_shows_words_weights_and_fields(org: Path, tmp_path: Path) -> None:
    target = tmp_path / "review.html"
    assert main(["review", str(org), "--domain", "acme", "--format", "html", "-o", str(target)]) == 0
    page = target.read_text(encoding="utf-8")
    row = _text(_row(page, "rep_e"))
    for words in PLAIN:
        assert words in row
    assert "customer:export@team" in row  # the exact code stays beside the words
    assert FIELDS in row
    _assert_weights(page)
    assert "direct-grants +8" in row
    # Every flag of the table is in the legend with its weight.
    for flag, (weight, _) in FLAGS.items():
        assert f"<dt>{flag} (weight {weight})</dt>" in page
    # Hostile names stay text.
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in page
    assert HOSTILE not in page


def test_campaign_page_shows_words_weights_and_fields(org: Path, tmp_path: Path) -> None:
    campaign = tmp_path / "campaign"
    start_campaign(str(org), "acme", campaign, default_reviewer="alice")
    page = (campaign / "alice.html").read_text(encoding="utf-8")
    text = _text(page)
    assert "may read, update customer records — on its own records" in text  # role rep
    assert PLAIN[2] in text  # the grant
    fields = re.search(r"<h2>Field visibility</h2>(.*?)</table>", page, re.S)
    assert fields is not None
    rep_e: list[str] = [r for r in re.findall(r"<tr>.*?</tr>", fields.group(1)) if "<td>rep_e</td>" in r]
    assert len(rep_e) == 1
    assert FIELDS in _text(rep_e[0])
    _assert_weights(page)
    for flag, (weight, _) in {**FLAGS, **CLEANUP_FLAGS}.items():
        assert f"<dt>{flag} (weight {weight})</dt>" in page
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in page
    assert HOSTILE not in page

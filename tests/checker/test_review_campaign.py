"""``salesauthz review start`` / ``review apply``: an access review with sign-off, against real
stores (SQLite always, PostgreSQL when it is reachable)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.adapters._services import postgres_schema
from tests.conftest import POLICIES

from salesauthz import Authorizer
from salesauthz.adapters.sql import SQLAdapter
from salesauthz.checker.campaign import (
    apply_campaign,
    read_decision_log,
    start_campaign,
)
from salesauthz.checker.cli import main
from salesauthz.errors import UsageError

DAY = 24 * 3600


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SOON = _at(time.time() + 10 * DAY)  # within the default 30-day expiry window
LATER = "2099-01-20T00:00:00Z"

ORG = f"""\
domain: acme
resources:
  customer: [read, update, export]
  order: [read, create]
departments:
  sales: {{}}
  east: {{parent: sales}}
  east-1: {{parent: east}}
  west: {{parent: sales}}
roles:
  admin:
    permissions:
      - scope: all
        "*": ["*"]
  manager:
    permissions:
      - scope: department_tree
        customer: [read, update, export]
        account: [manage]
  rep:
    permissions:
      - scope: own
        customer: [read, update]
  senior_rep:
    permissions:
      - scope: team
        customer: [read, update]
accounts:
  alice: {{department: sales, roles: [admin]}}
  mgr_east: {{department: east, roles: [manager]}}
  lead_e1: {{department: east-1, roles: [rep], reports_to: mgr_east}}
  rep_e1:
    department: east-1
    reports_to: lead_e1
    roles: [rep, {{role: senior_rep, expires: {LATER}}}]
    grants:
      - scope: team
        expires: {SOON}
        customer: [export]
  rep_e2: {{department: east-1, roles: [rep]}}
  rep_w: {{department: west, roles: [rep]}}
"""


@pytest.fixture
def org(tmp_path: Path) -> Path:
    directory = tmp_path / "org"
    directory.mkdir()
    (directory / "acme.yaml").write_text(ORG, encoding="utf-8")
    return directory


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, org: Path) -> Iterator[str]:
    """A real store holding the fixture organisation."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        assert main(["import", str(org), "--into", url]) == 0
        yield url
        return
    with postgres_schema() as url:
        assert main(["import", str(org), "--into", url]) == 0
        yield url


def stored(url: str) -> set[tuple[str, ...]]:
    adapter = SQLAdapter(url)
    try:
        return set(adapter.load())
    finally:
        adapter.close()


def audit_of(url: str) -> list[Any]:
    authz = Authorizer.from_url(url)
    try:
        return authz.audit.records("acme")
    finally:
        authz.close()


def review_file(campaign: Path, reviewer: str) -> Path:
    manifest = json.loads((campaign / "campaign.json").read_text(encoding="utf-8"))
    name: str = manifest["reviewers"][reviewer]["file"]
    return campaign / name


def lines_of(campaign: Path, reviewer: str) -> list[dict[str, Any]]:
    document = yaml.safe_load(review_file(campaign, reviewer).read_text(encoding="utf-8"))
    lines: list[dict[str, Any]] = document["lines"]
    return lines


def decide(campaign: Path, reviewer: str, decisions: dict[tuple[str, str], str],
           comment: str = "") -> dict[str, str]:
    """Edit the reviewer's file as a person would: change the ``decision:`` line under each
    (account, access) given, add a comment. Returns line id -> decision."""
    path = review_file(campaign, reviewer)
    text = path.read_text(encoding="utf-8")
    ids = {}
    for line in lines_of(campaign, reviewer):
        decision = decisions.get((line["account"], line["access"]))
        if decision is None:
            continue
        ids[line["id"]] = decision
        pattern = rf"(- id: {line['id']}\n(?:    .*\n)*?    decision: )undecided\n    comment: \"\""
        replacement = rf"\g<1>{decision}\n    comment: {json.dumps(comment)}"
        text, n = re.subn(pattern, replacement, text)
        assert n == 1
    assert len(ids) == len(decisions), "every decision names a line of this reviewer"
    path.write_text(text, encoding="utf-8")
    return ids


def access_of(campaign: Path) -> dict[tuple[str, str], dict[str, Any]]:
    manifest = json.loads((campaign / "campaign.json").read_text(encoding="utf-8"))
    return {(line["account"], line["access"]): {**line, "id": line_id}
            for line_id, line in manifest["lines"].items()}


# -- start ----------------------------------------------------------------------------------


def test_start_assigns_each_line_to_its_reviewer(org: Path, tmp_path: Path) -> None:
    campaign = tmp_path / "campaign"
    started = start_campaign(str(org), "acme", campaign, default_reviewer="alice")
    lines = access_of(campaign)
    reviewers = {key: line["reviewer"] for key, line in lines.items()}
    assert reviewers == {
        ("alice", "role admin"): "alice",  # nobody above it: the default reviewer
        ("mgr_east", "role manager"): "alice",  # head of sales, above east
        ("lead_e1", "role rep"): "mgr_east",  # its reporting superior
        ("rep_e1", "role rep"): "lead_e1",  # its reporting superior (who holds no manage right)
        ("rep_e1", f"role senior_rep until {LATER}"): "lead_e1",
        ("rep_e1", f"grant customer:export@team until {SOON}"): "lead_e1",
        ("rep_e2", "role rep"): "mgr_east",  # the head of east, nearest up from east-1
        ("rep_w", "role rep"): "alice",  # the head of sales, above west
    }
    manifest = started.manifest
    assert manifest["domain"] == "acme"
    assert manifest["store_version"] is None
    assert manifest["rules_digest"].startswith("sha256:")
    assert manifest["accounts"]["rep_e2"]["because"].startswith("the head of east")
    assert sorted(p.name for p in campaign.iterdir()) == [
        "alice.html", "alice.review.yaml", "campaign.json", "lead_e1.html", "lead_e1.review.yaml",
        "mgr_east.html", "mgr_east.review.yaml"]
    grant = lines[("rep_e1", f"grant customer:export@team until {SOON}")]
    assert grant["flags"] == ["direct-grants", "expiring-soon"]
    assert grant["explains"] == "may export customer records — on its own records and records in east-1"
    admin = lines[("alice", "role admin")]
    assert admin["flags"] == ["escalate", "all-scope", "manages-accounts"]
    assert admin["risk"] > grant["risk"]
    # The file is the one a reviewer edits: every line undecided, with the fields the brief asks.
    for line in lines_of(campaign, "lead_e1"):
        assert set(line) == {"id", "account", "access", "explains", "risk", "flags", "decision",
                             "comment"}
        assert line["decision"] == "undecided"


def test_start_needs_a_reviewer_for_everyone(org: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    campaign = tmp_path / "campaign"
    assert main(["review", "start", str(org), "--domain", "acme", "--out", str(campaign)]) == 2
    assert "no reviewer for 1 account (alice)" in capsys.readouterr().err
    assert not campaign.exists()
    assert main(["review", "start", str(org), "--domain", "acme", "--out", str(campaign),
                 "--default-reviewer", "alcie"]) == 2
    assert "did you mean 'alice'?" in capsys.readouterr().err
    assert main(["review", "start", str(org), "--domain", "acme", "--out", str(campaign),
                 "--default-reviewer", "alice"]) == 0
    out = capsys.readouterr().out
    assert "started: 8 lines for 3 reviewers" in out
    assert "no --decision-log given: no account is flagged dormant" in out
    # Never written over another campaign.
    assert main(["review", "start", str(org), "--domain", "acme", "--out", str(campaign),
                 "--default-reviewer", "alice"]) == 2


def test_start_on_the_sample(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    campaign = tmp_path / "campaign"
    start_campaign(str(policies), "acme", campaign, default_reviewer="alice")
    lines = access_of(campaign)
    # rep_e1a reports to lead_e1 (its reporting superior reviews it), rep_e1b to no one: the
    # head of east-1's line, mgr_east, reviews it.
    assert lines[("rep_e1a", "role junior_rep")]["reviewer"] == "lead_e1"
    assert lines[("rep_e1b", "role junior_rep")]["reviewer"] == "mgr_east"
    assert lines[("gone_1", "role junior_rep")]["flags"] == ["inactive-with-rights"]
    assert lines[("intern_e1", "grant customer:update@own")]["reviewer"] == "mgr_east"
    assert lines[("cs_1", "role customer_service")]["reviewer"] == "alice"  # service has no head
    assert {line["reviewer"] for line in lines.values()} == {"alice", "dir_sales", "lead_e1", "mgr_east"}


def test_dormant_accounts_from_the_decision_log(org: Path, tmp_path: Path) -> None:
    now = time.time()
    log = tmp_path / "decisions.log"

    def record(account: str, days_ago: float, domain: str = "acme") -> str:
        fields = {"decision_id": "x", "time": datetime.fromtimestamp(now - days_ago * DAY, UTC).isoformat(),
                  "domain": domain, "account": account, "action": "read", "type": "customer",
                  "allowed": True}
        return "INFO salesauthz.decisions " + json.dumps(fields)

    log.write_text("\n".join([record("rep_w", 200), record("rep_e2", 3), record("alice", 10),
                              record("mgr_east", 1, domain="globex"), "not a decision"]) + "\n",
                   encoding="utf-8")
    summary = read_decision_log(log, "acme")
    assert summary.records == 4
    assert summary.skipped == 1
    started = start_campaign(str(org), "acme", tmp_path / "c", default_reviewer="alice",
                             decision_log=log, dormant_days=90)
    dormant = started.manifest["dormant"]
    # mgr_east decided only in another domain; rep_w's last decision is 200 days old.
    assert dormant["accounts"] == ["lead_e1", "mgr_east", "rep_e1", "rep_w"]
    assert "dormant" in access_of(tmp_path / "c")[("rep_w", "role rep")]["flags"]
    assert "dormant" not in access_of(tmp_path / "c")[("rep_e2", "role rep")]["flags"]
    # A log younger than the period cannot show dormancy: nobody is flagged, and it says why.
    started = start_campaign(str(org), "acme", tmp_path / "c2", default_reviewer="alice",
                             decision_log=log, dormant_days=365)
    assert started.manifest["dormant"]["accounts"] == []
    assert "less than 365 days ago" in started.manifest["dormant"]["note"]


# -- apply ----------------------------------------------------------------------------------


def test_apply_revokes_exactly_what_was_decided_as_the_reviewer(
        store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = tmp_path / "campaign"
    # SOURCE may be the store itself.
    assert main(["review", "start", store, "--domain", "acme", "--out", str(campaign),
                 "--default-reviewer", "alice"]) == 0
    manifest = json.loads((campaign / "campaign.json").read_text(encoding="utf-8"))
    assert manifest["store_version"] is not None
    lines = access_of(campaign)
    decide(campaign, "mgr_east", {("lead_e1", "role rep"): "certify",
                                  ("rep_e2", "role rep"): "revoke"}, comment="<script>x</script>")
    decide(campaign, "alice", {("rep_w", "role rep"): "revoke", ("mgr_east", "role manager"): "certify",
                               ("alice", "role admin"): "certify"})
    # lead_e1 is rep_e1's superior but may not manage accounts: its revocation is refused.
    decide(campaign, "lead_e1", {(("rep_e1", f"grant customer:export@team until {SOON}")): "revoke",
                                 ("rep_e1", "role rep"): "certify"})
    before = stored(store)
    audit_before = len(audit_of(store))
    capsys.readouterr()

    # A dry run says what would happen and changes nothing.
    assert main(["review", "apply", str(campaign), "--url", store, "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "rep_e2 role rep — would be revoked (by mgr_east)" in out
    assert stored(store) == before
    assert len(audit_of(store)) == audit_before

    assert main(["review", "apply", str(campaign), "--url", store]) == 1  # undecided and refused remain
    out = capsys.readouterr().out
    after = stored(store)
    revoked = set(map(tuple, lines[("rep_e2", "role rep")]["rules"])) | set(
        map(tuple, lines[("rep_w", "role rep")]["rules"]))
    assert before - after == revoked
    assert after - before == set()
    assert "mgr_east: 1 revoked, 1 certified, 0 refused, 0 stale, 0 still undecided" in out
    assert "lead_e1: 0 revoked, 1 certified, 1 refused, 0 stale, 1 still undecided" in out
    assert "lead_e1 may not manage account rep_e1" in out
    assert "total: 2 revoked, 4 certified, 1 refused, 0 stale, 1 still undecided" in out
    records = audit_of(store)[audit_before:]
    assert [(r.actor, r.operation, r.target, set(r.removed)) for r in records
            if r.operation != "certify"] == [
        ("alice", "unassign_role", "rep_w", set(map(tuple, lines[("rep_w", "role rep")]["rules"]))),
        ("mgr_east", "unassign_role", "rep_e2", set(map(tuple, lines[("rep_e2", "role rep")]["rules"]))),
    ]
    # Each certification is the reviewer's act on the audit trail, naming the campaign and line.
    certified = [r for r in records if r.operation == "certify"]
    assert {(r.actor, r.target, r.detail.partition(": kept ")[2]) for r in certified} == {
        ("mgr_east", "lead_e1", "role rep"), ("alice", "mgr_east", "role manager"),
        ("alice", "alice", "role admin"), ("lead_e1", "rep_e1", "role rep")}
    assert all(r.detail.startswith(f"campaign of {manifest['created']}, line L") and not r.added
               and not r.removed and r.outcome == "applied" for r in certified)
    page = (campaign / "mgr_east.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>" not in page
    assert 'class="outcome-revoked"' in page

    # A second apply changes nothing and says so.
    assert main(["review", "apply", str(campaign), "--url", store]) == 1
    out = capsys.readouterr().out
    assert "nothing changed: 2 revocations of this campaign had already been carried out" in out
    assert "total: 0 revoked, 4 certified, 1 refused, 0 stale, 1 still undecided (2 revoked earlier)" in out
    assert stored(store) == after
    assert len(audit_of(store)) == audit_before + 6  # nothing certified twice

    # Once every line is decided and nothing is refused, apply exits 0.
    decide(campaign, "lead_e1", {(("rep_e1", f"role senior_rep until {LATER}")): "certify"})
    text = review_file(campaign, "lead_e1").read_text(encoding="utf-8")
    review_file(campaign, "lead_e1").write_text(text.replace("decision: revoke", "decision: certify"),
                                                encoding="utf-8")
    assert main(["review", "apply", str(campaign), "--url", store, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"]
    assert report["totals"]["certified"] == 6
    assert report["totals"]["already-revoked"] == 2
    assert len(audit_of(store)) == audit_before + 8  # the two lines certified now


def test_stale_lines_are_reported_not_guessed(tmp_path: Path, org: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["import", str(org), "--into", store]) == 0
    campaign = tmp_path / "campaign"
    start_campaign(store, "acme", campaign, default_reviewer="alice")
    decide(campaign, "mgr_east", {("rep_e2", "role rep"): "revoke", ("lead_e1", "role rep"): "certify"})
    decide(campaign, "alice", {("rep_w", "role rep"): "revoke"})
    # Meanwhile alice takes rep_e2's role away herself, and gives rep_w a new grant (a line
    # the campaign does not know, which leaves rep_w's role line as it was).
    authz = Authorizer.from_url(store)
    try:
        authz.admin("alice", domain="acme").unassign_role("rep_e2", "rep")
        authz.admin("alice", domain="acme").grant("rep_w", "customer", ["read"], scope="own")
    finally:
        authz.close()
    before = stored(store)
    report = apply_campaign(campaign, store)
    outcomes = {(o.account, o.access): (o.outcome, o.reason) for o in report.outcomes
                if o.decision != "undecided"}
    assert outcomes[("rep_e2", "role rep")] == ("stale", "it no longer exists")  # not revoked by mgr_east
    assert outcomes[("lead_e1", "role rep")] == ("certified", "")
    assert outcomes[("rep_w", "role rep")] == ("revoked", "")
    assert before - stored(store) == {("g", "rep_w", "rep", "acme")}
    assert not report.ok
    # A line whose rules changed (a grant extended) is stale too.
    authz = Authorizer.from_url(store)
    try:
        authz.admin("alice", domain="acme").grant("rep_e1", "customer", ["export"], scope="team")
    finally:
        authz.close()
    decide(campaign, "lead_e1", {("rep_e1", f"grant customer:export@team until {SOON}"): "certify"})
    report = apply_campaign(campaign, store)
    grant = next(o for o in report.outcomes if o.access.startswith("grant"))
    assert grant.outcome == "stale"
    assert grant.reason == ("it changed since the start: now grant "
                            "customer:export@team")


def test_review_files_edited_out_of_shape_are_refused(tmp_path: Path, org: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["import", str(org), "--into", store]) == 0
    campaign = tmp_path / "campaign"
    start_campaign(str(org), "acme", campaign, default_reviewer="alice")
    decide(campaign, "alice", {("rep_w", "role rep"): "revoke"})
    path = review_file(campaign, "mgr_east")
    text = path.read_text(encoding="utf-8")
    text = text.replace("decision: undecided", "decision: revokee", 1)
    text = text.replace('access: "role rep"', 'access: "role admin"', 1)
    text = text.replace("    comment: \"\"\n", "    coment: \"\"\n", 1)
    path.write_text(text, encoding="utf-8")
    other = review_file(campaign, "lead_e1")
    body = other.read_text(encoding="utf-8")
    cut = body.index("  - id:", body.index("  - id:") + 1)
    other.write_text(body[:cut], encoding="utf-8")  # its last lines deleted
    before = stored(store)
    capsys.readouterr()
    assert main(["review", "apply", str(campaign), "--url", store]) == 2
    err = capsys.readouterr().err
    assert stored(store) == before  # nothing applied, not even alice's valid revocation
    line_of = {text: n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)}
    decision_line = line_of["    decision: revokee"]
    assert f"mgr_east.review.yaml:{decision_line}: line" in err
    assert "decision must be one of undecided, certify, revoke, not 'revokee': did you mean 'revoke'?" in err
    assert "the access of line" in err
    assert "only decision and comment may be edited" in err
    assert "unknown key 'coment': did you mean 'comment'?" in err
    assert "lead_e1.review.yaml:1: line" in err
    assert "is missing" in err
    path.write_text("reviewer: [unclosed\n", encoding="utf-8")
    with pytest.raises(UsageError):
        apply_campaign(campaign, store)


def test_apply_refuses_an_unknown_store_or_campaign(tmp_path: Path, org: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    campaign = tmp_path / "campaign"
    start_campaign(str(org), "acme", campaign, default_reviewer="alice")
    missing = tmp_path / "missing.db"
    assert main(["review", "apply", str(campaign), "--url", f"sqlite:///{missing}"]) == 2
    assert not missing.exists()
    assert main(["review", "apply", str(tmp_path), "--url", f"sqlite:///{missing}"]) == 2
    assert "not a review campaign" in capsys.readouterr().err


def _timed_unassign_supported() -> bool:
    """Whether this version's ``Admin.unassign_role`` removes a timed assignment (the
    record-model administration adds it)."""
    authz = Authorizer.from_rules([
        ("p3", "a", "d", "active"), ("p3", "b", "d", "active"), ("p4", "r", "d"),
        ("p4", "boss", "d"), ("p2", "d", "account", "manage"),
        ("p", "boss", "d", "account", "manage", "all", ""), ("g", "a", "boss", "d"),
        ("p8", "b", "r", "d", LATER)])
    try:
        authz.admin("a", domain="d").unassign_role("b", "r")
    except KeyError:
        return False
    return True


def test_a_timed_role_is_revoked_or_refused_with_the_reason(tmp_path: Path, org: Path) -> None:
    (org / "acme.yaml").write_text(ORG.replace(
        "rep_e2: {department: east-1, roles: [rep]}",
        f"rep_e2: {{department: east-1, roles: [{{role: senior_rep, expires: {LATER}}}]}}"), encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["import", str(org), "--into", store]) == 0
    campaign = tmp_path / "campaign"
    start_campaign(str(org), "acme", campaign, default_reviewer="alice")
    decide(campaign, "mgr_east", {("rep_e2", f"role senior_rep until {LATER}"): "revoke"})
    before = stored(store)
    report = apply_campaign(campaign, store)
    [line] = [o for o in report.outcomes if o.decision == "revoke"]
    timed = ("p8", "rep_e2", "senior_rep", "acme", LATER)
    assert timed in before
    if _timed_unassign_supported():
        assert line.outcome == "revoked"
        assert before - stored(store) == {timed}
    else:  # this version's admin API has no operation for it: refused, with the reason
        assert line.outcome == "refused"
        assert line.reason.startswith("the admin API cannot remove it")
        assert stored(store) == before


def test_a_certification_revoked_meanwhile_by_another_process_is_stale(
        store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Certifications are written in the store's transaction, decided on the rules it applies
    to: when another process revokes a certified line after apply read the store, that line is
    reported stale and no certification of it is recorded."""
    from salesauthz.checker import campaign as module

    directory = tmp_path / "campaign"
    assert main(["review", "start", store, "--domain", "acme", "--out", str(directory),
                 "--default-reviewer", "alice"]) == 0
    lines = access_of(directory)
    decide(directory, "mgr_east", {("lead_e1", "role rep"): "certify"})
    decide(directory, "alice", {("mgr_east", "role manager"): "certify"})
    gone = lines[("lead_e1", "role rep")]["rules"]
    checked = module._already_certified
    revoked: list[bool] = []

    def meanwhile(*args: Any) -> bool:
        if not revoked:  # another process, after apply has read the store
            other = Authorizer.from_url(store)
            other.apply_changes(removed=[tuple(r) for r in gone])
            other.close()
            revoked.append(True)
        return checked(*args)

    monkeypatch.setattr(module, "_already_certified", meanwhile)
    audit_before = len(audit_of(store))
    capsys.readouterr()
    assert main(["review", "apply", str(directory), "--url", store, "--format", "json"]) == 1
    outcomes = {(o["account"], o["access"]): o for o in json.loads(capsys.readouterr().out)["lines"]}
    assert outcomes[("lead_e1", "role rep")]["outcome"] == "stale"
    assert outcomes[("mgr_east", "role manager")]["outcome"] == "certified"
    certified = [r for r in audit_of(store)[audit_before:] if r.operation == "certify"]
    assert [(r.actor, r.target) for r in certified] == [("alice", "mgr_east")]

"""Import then export keeps what is not a rule: descriptions, comments (suppressions among them),
order and layout — merged from the domain's existing document — and ``check`` on the export
finds what it finds on the original."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from tests.conftest import examples
from tests.strategies import Organisation, organisations

from salesauthz import Authorizer
from salesauthz.adapters.sql import SQLAdapter
from salesauthz.checker.cli import main
from salesauthz.checker.export_merge import _ensure_suppressed, comments_of, render_document
from salesauthz.checker.lint import CheckResult, check_directory
from salesauthz.checker.storage_commands import export_domains, import_directory
from salesauthz.conditions import Condition
from salesauthz.models.loader import load_document
from salesauthz.scopes import Scope, ScopeKind

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
NOW = 1_800_000_000.0
MFA = Condition.of(requires={"mfa": True})


def _findings(result: CheckResult) -> list[tuple[str, str]]:
    return sorted((f.code, f.message) for f in result.findings)


def _store(tmp_path: Path, source: Path = POLICIES) -> str:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    import_directory(source, url)
    return url


def test_round_trip_keeps_descriptions_and_suppressions(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path)
    out = tmp_path / "out"
    assert main(["export", url, "--domain", "acme", "--domain", "globex", "--to", str(out),
                 "--base", str(POLICIES)]) == 0
    assert "acme: kept the descriptions, comments and layout of" in capsys.readouterr().out
    original, exported = check_directory(POLICIES, now=NOW), check_directory(out, now=NOW)
    assert _findings(exported) == _findings(original)
    assert exported.suppressed == original.suppressed == 4
    text = (out / "acme.yaml").read_text(encoding="utf-8")
    assert "description: A sales company with two sales regions, customer service and sales ops." in text
    assert "    description: Everything in the tenant, including escalation." in text
    assert "  ops: {}" in text  # a root department, never `ops: null`
    assert "# salesauthz: ignore[SA201]" in text
    # Semantically the same rules, and textually the same file but for quoting style.
    assert import_directory(out, url, dry_run=True) == {"acme": ([], []), "globex": ([], [])}
    original_lines = (POLICIES / "acme.yaml").read_text(encoding="utf-8").replace('"', "'").splitlines()
    assert text.splitlines() == original_lines


def test_export_into_the_policy_directory_shows_only_what_changed(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    url = _store(tmp_path, policies)
    before = (policies / "acme.yaml").read_text(encoding="utf-8").splitlines()
    # An administrator changes the live store: a new grant, and an account removed.
    authz = Authorizer(SQLAdapter(url))
    try:
        # with the second factor the sample's exports need (else SA214 reports it)
        authz.admin("alice", domain="acme").grant("rep_e2", "customer", ["export"],
                                                  scope=Scope(ScopeKind.OWN, condition=MFA))
        gone = [r for r in authz.rules("acme") if r[1] == "gone_1"]
        authz.apply_changes(removed=gone)
    finally:
        authz.close()
    assert main(["export", url, "--domain", "acme", "--to", str(policies)]) == 0
    captured = capsys.readouterr()
    assert "acme: kept the descriptions, comments and layout of" in captured.out
    # gone_1's line carried a suppression: gone with it, and said so. The comment above gone_1
    # (about it and frozen_1) now stands above frozen_1.
    assert ("dropped 1 comment about keys no longer in the store: '# salesauthz: ignore[SA207]'"
            in captured.err)
    after = (policies / "acme.yaml").read_text(encoding="utf-8").splitlines()
    changes = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    removed = [line[1:] for line in changes if line.startswith("-")]
    added = [line[1:] for line in changes if line.startswith("+")]
    assert [line.strip() for line in removed if "*" not in line] == [
        "rep_e2: {department: east-2, reports_to: lead_e1, roles: [junior_rep, account_team]}",
        "gone_1: {department: east-1, roles: [junior_rep], status: deactivated}  # salesauthz: ignore[SA207]",
    ]
    assert [line.strip() for line in added if "*" not in line] == [
        "rep_e2:", "department: east-2", "reports_to: lead_e1", "roles: [junior_rep, account_team]",
        "grants:",
        "- scope: own",
        "requires: {mfa: true}",
        "customer: [export]"]
    result = check_directory(policies, now=NOW)
    # the three suppressions still about something: SA201, frozen_1's SA207, the admin's SA214
    assert result.suppressed == 3
    assert result.findings == []


def test_no_merge_and_a_fresh_directory(tmp_path: Path) -> None:
    url = _store(tmp_path)
    exported = export_domains(url, ["acme"], tmp_path / "plain", merge=False)
    assert exported.merged_with == {}
    text = (tmp_path / "plain" / "acme.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Exported by `salesauthz export`")
    assert "null" not in text
    assert "  ops: {}" in text
    assert "  alice: {department: sales, roles: [admin]}" in text  # small mappings on one line
    assert "description" not in text  # the store has none: that is what merging is for
    result = check_directory(tmp_path / "plain", now=NOW)
    assert result.suppressed == 0
    # SA214: the store keeps the domain's sensitive_actions, and the admin's wildcard export has
    # no requirement (silenced, with a reason, in the policy file only)
    assert {f.code for f in result.findings} == {"SA201", "SA207", "SA214"}


def test_a_base_that_does_not_load_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "acme.yaml").write_text("domain: acme\naccounts: [\n", encoding="utf-8")  # not YAML
    out = str(tmp_path / "out")
    assert main(["export", url, "--domain", "acme", "--to", out, "--base", str(broken)]) == 2
    assert "--no-merge" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["export", url, "--domain", "acme", "--to", out, "--base", str(broken), "--no-merge"]) == 0


def test_comments_are_found_by_the_scanner_not_by_a_hash() -> None:
    text = 'a: "#not"  # one\n# two\nb: [x, "y # z"]   # three\nc: d#e\n'
    assert [(c.text, c.line, c.trailing) for c in comments_of(text)] == [
        ("# one", 1, True), ("# two", 2, False), ("# three", 3, True)]


BASE = """# The header stays.
domain: acme
resources:
  customer: [read, update]
departments:
  sales: {description: Head office}
roles:
  rep:
    description: A sales rep.
    permissions:
      # Own customers only.
      - scope: own
        customer: [read]  # salesauthz: ignore[SA204]
accounts:
  bob:  # salesauthz: ignore[SA206]
    roles: [rep]
"""


def test_merge_puts_comments_back_by_key_not_by_line() -> None:
    # The store's version: the permission set moved in the list, a new account first.
    store = load_document("""domain: acme
resources: {customer: [read, update]}
departments: {sales: {}}
roles:
  rep:
    permissions:
      - {scope: team, customer: [update]}
      - {scope: own, customer: [read]}
accounts:
  amy: {roles: [rep]}
  bob: {roles: [rep]}
""", "store.yaml").document
    merged = render_document(store, BASE, header="# fresh\n")
    assert merged.dropped == []
    assert merged.kept == 4
    lines = merged.text.splitlines()
    assert lines[0] == "# The header stays."
    assert "  sales: {description: Head office}" in lines
    assert "    description: A sales rep." in lines
    own = lines.index("      - scope: own")
    assert lines[own - 1] == "      # Own customers only."
    assert lines[own + 1] == "        customer: [read]  # salesauthz: ignore[SA204]"
    assert "  bob:  # salesauthz: ignore[SA206]" in lines
    assert lines.index("  bob:  # salesauthz: ignore[SA206]") > lines.index("  amy: {roles: [rep]}") or \
        lines.index("  amy: {roles: [rep]}") > lines.index("  bob:  # salesauthz: ignore[SA206]")


def test_a_suppression_keeps_covering_the_keys_it_covered() -> None:
    # A trailing suppression silences its line and the next (the check's rule): the status below
    # the account's key stays covered when the account gains keys in the store.
    base = "domain: acme\nroles: {r: {}}\naccounts:\n  gone:  # salesauthz: ignore[SA207]\n" \
           "    status: frozen\n    roles: [r]\n"
    store = load_document("domain: acme\nroles: {r: {}}\naccounts:\n  gone: {status: frozen, roles: [r], "
                          "department: d}\ndepartments: {d: {}}\n", "s.yaml").document
    lines = render_document(store, base).text.splitlines()
    status = lines.index("    status: frozen")
    assert lines[status - 1] == "  gone:  # salesauthz: ignore[SA207]"
    assert lines[status + 1:status + 3] == ["    roles: [r]", "    department: d"]


def test_suppressions_are_merged_per_line() -> None:
    out = ["a: 1", "b: 2  # note", "c: 3  # salesauthz: ignore[SA201]", "d: 4"]
    _ensure_suppressed(out, 1, "# salesauthz: ignore[SA207]")
    assert out[1] == "b: 2  # note  # salesauthz: ignore[SA207]"
    _ensure_suppressed(out, 2, "# salesauthz: ignore[SA202]")  # the line above covers only SA207
    assert out[2] == "c: 3  # salesauthz: ignore[SA201, SA202]"
    _ensure_suppressed(out, 3, "# salesauthz: ignore[SA201]")  # already: the line above says it
    assert out[3] == "d: 4"
    _ensure_suppressed(out, 3, "# salesauthz: ignore")
    assert out[3] == "d: 4  # salesauthz: ignore"


@settings(max_examples=examples(10), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org=organisations())
def test_exporting_over_an_export_changes_nothing_hostile_names_too(
        tmp_path_factory: pytest.TempPathFactory, org: Organisation) -> None:
    work = tmp_path_factory.mktemp("merge")
    url = f"sqlite:///{work / 'rules.db'}"
    store = SQLAdapter(url)
    store.apply(org.rules, [])
    store.close()
    first = export_domains(url, org.domains, work / "out")
    texts = {path: path.read_text(encoding="utf-8") for path in first.files if path.suffix == ".yaml"}
    second = export_domains(url, org.domains, work / "out")  # merged with the first
    assert set(second.merged_with) == set(org.domains)
    assert {path: path.read_text(encoding="utf-8") for path in second.files} == texts
    assert all(change == ([], []) for change in import_directory(work / "out", url, dry_run=True).values())


def test_which_existing_documents_are_read(tmp_path: Path) -> None:
    from salesauthz.checker.storage_commands import base_documents

    base = tmp_path / "base"
    base.mkdir()
    # Another domain's broken document is not this export's business; nor is an unreadable entry.
    (base / "other.yaml").write_text("domain: other\naccounts: [\n", encoding="utf-8")
    (base / "dir.yaml").mkdir()
    # A document whose domain is not on a plain `domain:` line is parsed to find out.
    (base / "acme.yaml").write_text("{domain: acme, description: Flow style}\n", encoding="utf-8")
    (base / "quoted.yaml").write_text("domain: 'globex'  # the second tenant\n", encoding="utf-8")
    (base / "broken.yaml").write_text("{domain: [\n", encoding="utf-8")  # no domain line, not YAML
    found = base_documents(base, ["acme", "globex"])
    assert {domain: file.name for domain, (file, _) in found.items()} == {"acme": "acme.yaml",
                                                                         "globex": "quoted.yaml"}
    assert base_documents(tmp_path / "missing", ["acme"]) == {}
    url = _store(tmp_path)
    exported = export_domains(url, ["acme", "globex"], tmp_path / "out", base=base)
    assert "description: Flow style" in (tmp_path / "out" / "acme.yaml").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "quoted.yaml").read_text(encoding="utf-8").startswith("domain: globex")
    assert set(exported.merged_with) == {"acme", "globex"}


def test_a_suppression_follows_a_key_the_new_layout_moves_away() -> None:
    # The check reads a suppression on a line as silencing that line and the next: here `next`'s
    # findings too. When `gone` becomes a block (it gained a grant), `next` moves away from the
    # comment — and gets the suppression on its own line, so it stays silenced.
    base = ("domain: acme\nresources: {customer: [read]}\nroles: {r: {}}\naccounts:\n"
            "  gone: {status: frozen, roles: [r]}  # salesauthz: ignore[SA207]\n"
            "  next: {status: frozen, roles: [r]}\n")
    store = load_document("domain: acme\nresources: {customer: [read]}\nroles: {r: {}}\naccounts:\n"
                          "  gone: {status: frozen, roles: [r], grants: [{scope: own, customer: [read]}]}\n"
                          "  next: {status: frozen, roles: [r]}\n", "s.yaml").document
    lines = render_document(store, base).text.splitlines()
    assert "  gone:  # salesauthz: ignore[SA207]" in lines
    assert "  next: {status: frozen, roles: [r]}  # salesauthz: ignore[SA207]" in lines

"""Strong sessions in the checker: who-can/what-can show requirements, the SA214 lint for
sensitive actions without one (off unless the domain lists them), policy tests with a request
context, and the review flag for exports without a second factor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from salesauthz import _engine as engine
from salesauthz.checker.campaign import access_lines, line_flags
from salesauthz.checker.cli import main
from salesauthz.checker.lint import check_directory
from salesauthz.checker.listings import open_source
from salesauthz.checker.review import build_review
from salesauthz.checker.testing import run_tests
from salesauthz.models import DomainDocument, compile_document, decompile_rules
from salesauthz.models.loader import load_directory

MISTAKE = (Path(__file__).resolve().parents[1] / "fixtures" / "mistakes"
           / "sensitive_action_without_requirement")


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(MISTAKE, target)
    (target / "expected.txt").unlink()
    return target


def without_switch(policy: Path) -> Path:
    path = policy / "acme.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("sensitive_actions: [export]\n", ""),
                    encoding="utf-8")
    return policy


def test_who_can_and_what_can_show_requirements(policy: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["what-can", "rep_1", "--domain", "acme", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "customer:export@own [mfa]" in out
    assert "customer:read@own\n" in out  # no requirement, none shown
    assert main(["who-can", "export", "customer", "--domain", "acme", str(policy)]) == 0
    rows = {line.split()[0]: line.split(None, 1)[1] for line in
            capsys.readouterr().out.splitlines()[2:]}
    assert rows == {"alice": "all [mfa]", "ana": "all", "rep_1": "own [mfa]"}


def test_sa214_is_off_unless_the_domain_lists_sensitive_actions(policy: Path) -> None:
    found = [(f.code, f.line) for f in check_directory(policy).findings]
    assert ("SA214", 28) in found
    assert "SA214" not in {f.code for f in check_directory(without_switch(policy)).findings}


def test_sa214_true_lists_the_usual_sensitive_actions(policy: Path) -> None:
    path = policy / "acme.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("sensitive_actions: [export]",
                                                             "sensitive_actions: true"),
                    encoding="utf-8")
    messages = sorted(f.message for f in check_directory(policy).findings if f.code == "SA214")
    assert messages == [
        "role 'admin' gives account:manage without a requirement (requires:), and domain 'acme' "
        "lists it as sensitive",
        "role 'analyst' gives customer:export without a requirement (requires:), and domain "
        "'acme' lists it as sensitive",
    ]


def test_sa214_sees_wildcards_and_grants(policy: Path) -> None:
    path = policy / "acme.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "  ana: {department: sales, roles: [analyst]}",
        "  ana: {department: sales, grants: [{scope: own, '*': ['*']}]}")
    path.write_text(text, encoding="utf-8")
    messages = [f.message for f in check_directory(policy).findings if f.code == "SA214"]
    assert "account 'ana' (a direct grant) gives customer:export without a requirement" \
        in " | ".join(messages)


def test_sensitive_actions_round_trip_through_rules(policy: Path) -> None:
    rules = load_directory(policy).rules
    assert ("p11", "acme", "sensitive_actions", '["export"]') in rules
    (document,) = decompile_rules(rules)
    assert document.sensitive_actions == ["export"]
    assert not [r for r in compile_document(DomainDocument.model_validate(
        {"domain": "x", "sensitive_actions": False})) if r[0] == "p11"]


def test_policy_tests_take_a_context_and_record_attributes(policy: Path) -> None:
    (policy / "acme.test.yaml").write_text("""\
domain: acme
tests:
  - check: {account: rep_1, action: export, record: {type: customer, owner: rep_1},
            context: {mfa: true}}
    expect: allow
  - check: {account: rep_1, action: export, record: {type: customer, owner: rep_1}}
    expect: deny
  - check: {account: rep_1, action: export, record: {type: customer, owner: rep_1},
            context: {mfa: false, ip: 10.0.0.1, now: 2030-03-18T09:00:00Z}}
    expect: deny
  - check: {account: rep_1, action: read,
            record: {type: customer, owner: rep_1, attributes: {region: East}}}
    expect: allow
""", encoding="utf-8")
    report = run_tests(policy)
    assert [r.passed for r in report.results] == [True, True, True, True], \
        [r.to_json() for r in report.results]
    # The context decides: the same case expecting deny with mfa fails.
    (policy / "acme.test.yaml").write_text("""\
domain: acme
tests:
  - check: {account: rep_1, action: export, record: {type: customer, owner: rep_1},
            context: {mfa: true}}
    expect: deny
""", encoding="utf-8")
    assert not run_tests(policy).ok


def test_review_flags_exports_without_a_second_factor(policy: Path) -> None:
    rows = {row.account: row for row in build_review(open_source(str(policy), None), "acme").rows}
    assert "export-without-mfa" in rows["ana"].flags
    assert "export-without-mfa" not in rows["rep_1"].flags
    assert "export-without-mfa" not in rows["alice"].flags
    # A domain that never asks for a second factor flags no one.
    plain = policy / "acme.yaml"
    plain.write_text(plain.read_text(encoding="utf-8").replace("requires: {mfa: true}",
                                                               "requires: {ip: [10.0.0.0/8]}"),
                     encoding="utf-8")
    rows = {row.account: row for row in
            build_review(open_source(str(without_switch(policy)), None), "acme").rows}
    assert not any("export-without-mfa" in row.flags for row in rows.values())


def test_campaign_lines_flag_exports_without_a_second_factor(policy: Path) -> None:
    rules = list(load_directory(policy).rules)
    snapshot = engine.compile_domains(rules)["acme"]
    lines = access_lines(rules, "acme")
    flags = {key[1]: line_flags(snapshot, key, found, 0.0, 30, frozenset())[0]
             for key, found in lines.items()}
    assert "export-without-mfa" in flags["ana"]
    assert "export-without-mfa" not in flags["rep_1"]
    assert "export-without-mfa" not in flags["alice"]


def test_a_stored_sensitive_actions_setting_is_checked() -> None:
    from salesauthz._rules import check_rule

    assert check_rule(("p11", "acme", "sensitive_actions", '["export","account:manage"]')) is None
    for bad in ("export", '[""]', "[1]", '{"a":1}'):
        problem = check_rule(("p11", "acme", "sensitive_actions", bad))
        assert problem is not None
        assert "invalid sensitive_actions" in problem


def test_lints_compare_conditioned_permissions_as_narrower(tmp_path: Path) -> None:
    """SA203/SA204 see a permission's condition: `read@own` is not subsumed by `read@all where
    …`, two `@all` with different conditions are not twins, the same condition twice is."""
    (tmp_path / "acme.yaml").write_text("""\
domain: acme
resources:
  customer: {actions: [read], attributes: {region: str}}
departments:
  sales: {}
roles:
  rep:
    permissions:
      - scope: own
        customer: [read]
      - scope: all
        where: {region: East}
        customer: [read]
      - scope: all
        where: {region: West}
        customer: [read]
      - scope: all
        where: {region: West}
        customer: [read]
accounts:
  boss: {department: sales, grants: [{scope: all, account: [manage], customer: [read],
                                      requires: {mfa: true}}, {scope: all, role: [escalate]}]}
  a: {department: sales, roles: [rep]}
""", encoding="utf-8")
    found = [(f.code, f.line) for f in check_directory(tmp_path).findings]
    assert found == [("SA203", 19)], found  # the repeated `region: West` only


def test_a_manager_whose_right_needs_a_second_factor_still_manages(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("""\
domain: acme
resources:
  customer: [read]
departments:
  sales: {}
accounts:
  boss: {department: sales, grants: [{scope: all, requires: {mfa: true},
                                      account: [manage], role: [escalate], customer: [read]}]}
  a: {department: sales, grants: [{scope: own, customer: [read]}]}
""", encoding="utf-8")
    messages = [f.message for f in check_directory(tmp_path).findings if f.code == "SA202"]
    assert not any("no account manages 'a'" in m for m in messages), messages


RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes"


def who_can_accounts(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["who-can", *args, "--domain", "tianhe", str(RECIPES), "--format", "json"]) == 0
    import json

    return [row["account"] for row in json.loads(capsys.readouterr().out)["accounts"]]


def test_who_can_on_a_record_with_attributes(capsys: pytest.CaptureFixture[str]) -> None:
    assert who_can_accounts(capsys, "claim", "customer", "--attribute", "pool=p-south") == \
        ["rep_s1", "rep_s2", "root"]
    assert who_can_accounts(capsys, "claim", "customer", "--attribute", "pool=p-west") == \
        ["rep_s2", "root"]
    # An owned customer is out of the pool; a territory reaches it.
    assert who_can_accounts(capsys, "read", "customer", "--owner", "director",
                            "--attribute", "region=South") == ["director", "rep_s1", "root"]
    # Requirements are taken as met (the scope says which): the director deletes with mfa 2.
    assert who_can_accounts(capsys, "delete", "customer", "--attribute", "region=West") == \
        ["director", "root"]
    assert who_can_accounts(capsys, "read", "ticket", "--owner", "director",
                            "--attribute", "customer_id=c-17") == ["buyer_17", "root"]
    assert who_can_accounts(capsys, "read", "ticket", "--owner", "director",
                            "--attribute", "customer_id=c-18") == ["root"]
    # JSON values: a number stays a number.
    assert main(["who-can", "read", "customer", "--attribute", "region", "--domain", "tianhe",
                 str(RECIPES)]) == 2
    assert "write NAME=VALUE" in capsys.readouterr().err


def test_explain_with_a_request_context(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["explain", "rep_s1", "export", "customer", str(RECIPES), "--domain", "tianhe",
            "--owner", "rep_s1", "--format", "json"]
    import json

    assert main([*base, "--context", "mfa=true", "--context", "ip=10.0.0.3",
                 "--context", "now=2030-03-18T09:00:00+08:00"]) == 0
    assert json.loads(capsys.readouterr().out)["allowed"] is True
    assert main([*base, "--context", "ip=10.0.0.3",
                 "--context", "now=2030-03-18T09:00:00+08:00"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["allowed"], answer["missing_context"]) == (False, ["mfa"])
    assert main([*base, "--context", "mfa=true", "--context", "ip=10.0.0.3",
                 "--context", "now=2030-03-17T09:00:00+08:00"]) == 0  # a Sunday
    assert json.loads(capsys.readouterr().out)["missing_context"] == ["hours"]
    assert main([*base, "--context", "second_factor=1"]) == 2
    assert "the request context has mfa, ip and now" in capsys.readouterr().err

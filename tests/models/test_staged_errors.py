"""Every independent error of a policy in one run: YAML-level problems that cost only their own
part (a duplicate key), schema errors and cross-reference errors are reported together; a
reference from a part that failed its schema is not checked (its problem is already said), the
rest is."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesauthz.checker.cli import main
from salesauthz.errors import PolicyError, PolicyIssue
from salesauthz.models.loader import load_directory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "staged"

HEAD = """domain: acme
resources:
  customer: [read, update]
departments:
  sales: {}
  east: {parent: sales}
roles:
  rep:
    permissions:
      - scope: own
        customer: [read, update]
"""


def _issues(directory: Path) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as caught:
        load_directory(directory)
    return sorted(caught.value.issues, key=lambda i: (i.file or "", i.line or 0, i.column or 0))


def _found(directory: Path) -> list[tuple[int | None, str, str]]:
    return [(i.line, i.code, i.message) for i in _issues(directory)]


def _write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_duplicate_key_unknown_key_and_bad_reference_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    directory = FIXTURES / "three_mistakes"
    expected = (directory / "expected.txt").read_text(encoding="utf-8").splitlines()
    got = [f"{i.line}:{i.column} {i.code} {i.message}" for i in _issues(directory)]
    assert got == expected
    assert main(["check", str(directory), "--no-color"]) == 1
    out = capsys.readouterr().out
    assert out.count(" error SA") == 3
    assert "did you mean 'roles'?" in out  # the unknown key's hint
    assert out.splitlines()[-1].startswith("3 errors, 0 warnings")


def test_references_of_a_part_that_failed_its_schema_are_skipped_the_rest_checked(tmp_path: Path) -> None:
    _write(tmp_path, HEAD + """accounts:
  bob: {department: nowhere, roles: rep}
  carol: nonsense
  dave: {department: east, parent: carol, roles: [rep, ghost]}
""")
    assert _found(tmp_path) == [
        # bob's roles are not a list: reported, and not looked up; its department still is.
        (13, "SA120", "account 'bob' is in unknown department 'nowhere'"),
        (13, "SA102", "accounts.bob.roles: expected a list ([a, b]), not text 'rep'"),
        # carol is not a mapping: reported once; dave's parent carol still exists.
        (14, "SA102", "accounts.carol: expected a mapping ({department: …, roles: …, parent: …}), "
                      "not text 'nonsense'"),
        (15, "SA130", "account 'dave' is assigned unknown role 'ghost'"),
    ]


def test_a_broken_resource_type_does_not_make_every_use_of_it_an_error(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
resources:
  customer: read
  lead: [read, write]
roles:
  rep:
    permissions:
      - scope: own
        customer: [read, update]
        lead: [read, wrte]
        custmer: [read]
""")
    found = _found(tmp_path)
    assert [(line, code) for line, code, _ in found] == [(3, "SA102"), (10, "SA153"), (11, "SA152")]
    # customer's actions are unknown (its declaration failed): no SA153 for read or update.
    assert "unknown action 'wrte' for 'lead'" in found[1][2]
    issues = _issues(tmp_path)
    assert issues[1].hint is not None
    assert issues[1].hint.startswith("did you mean 'write'?")
    assert issues[2].hint == "did you mean 'customer'?"


def test_a_broken_section_does_not_make_every_reference_to_it_an_error(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
departments: [sales, east]
roles: {rep: {}}
accounts:
  bob: {department: east, roles: [rep, lead]}
""")
    assert _found(tmp_path) == [
        (2, "SA102", "departments: expected a mapping (key: value), not a list"),
        (5, "SA130", "account 'bob' is assigned unknown role 'lead'"),  # no SA120 for east
    ]


def test_a_missing_domain_does_not_hide_the_rest(tmp_path: Path) -> None:
    _write(tmp_path, """roles: {rep: {}}
accounts:
  bob: {roles: [reep]}
""")
    issues = _issues(tmp_path)
    assert [(i.line, i.code) for i in issues] == [(1, "SA102"), (3, "SA130")]
    assert issues[0].message == "domain: the required key 'domain' is missing"
    assert issues[1].hint == "did you mean 'rep'?"


def test_yaml_refused_value_is_reported_once_and_the_rest_checked(tmp_path: Path) -> None:
    _write(tmp_path, HEAD + """accounts:
  bob:
    department: east
    roles: [rep, lead]
    grants:
      - scope: own
        expires: 2026-02-30
        customer: [read]
""")
    found = _found(tmp_path)
    assert [(line, code) for line, code, _ in found] == [(15, "SA130"), (18, "SA102")]
    assert found[1][2].startswith("invalid date or time '2026-02-30'")


def test_unreadable_yaml_stops_its_own_file_only(tmp_path: Path) -> None:
    _write(tmp_path, "domain: a\nroles: [\n", "a.yaml")
    _write(tmp_path, "domain: b\naccounts:\n  bob: {roles: [ghost]}\n", "b.yaml")
    found = [(Path(i.file or "").name, i.code) for i in _issues(tmp_path)]
    assert found == [("a.yaml", "SA101"), ("b.yaml", "SA130")]


def test_duplicate_domains_and_other_files_still_reported(tmp_path: Path) -> None:
    _write(tmp_path, "domain: a\naccounts:\n  bob: {}\n  bob: {}\n", "a.yaml")
    _write(tmp_path, "domain: a\n", "b.yaml")
    found = [(Path(i.file or "").name, i.line, i.code) for i in _issues(tmp_path)]
    assert found == [("a.yaml", 4, "SA103"), ("b.yaml", 1, "SA111")]


def test_pydantic_internals_never_reach_a_message(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
roles:
  r:
    fields:
      customer:
        phone: visble
        email: {mode: visible, scope: {custom: []}}
    permissions:
      - scope: tem
        customer: [read]
      - customer: [read]
accounts:
  bob: {status: gone, department: 5}
  '': {}
""")
    issues = _issues(tmp_path)
    text = "\n".join(f"{i.message} {i.hint}" for i in issues)
    for internal in ("Input should", "instance of", "FieldRuleDocument", "CustomScope", "literal[",
                     "Field required", "String should", "after validation", "[type="):
        assert internal not in text, text
    messages = {i.message for i in issues}
    assert "roles.r.fields.customer.phone: expected 'visible', 'readonly' or 'hidden', or a mapping " \
           "({mode: …, scope: …, otherwise: …}), not text 'visble'" in messages
    assert "roles.r.fields.customer.email.scope.custom: the list is empty: name at least one" in messages
    assert "roles.r.permissions.1.scope: the required key 'scope' is missing" in messages
    assert "accounts.bob.status: expected 'active', 'frozen' or 'deactivated', not text 'gone'" in messages
    assert "accounts.bob.department: expected text, not the number 5" in messages
    assert "accounts.'': a name cannot be empty" in messages
    hints = {i.message.split(":")[0]: i.hint for i in issues}
    assert hints["roles.r.fields.customer.phone"] == "did you mean 'visible'?"
    assert hints["accounts.bob.department"] == "quote it if it is a name: '5'"


def test_a_broken_roles_section_leaves_role_references_unchecked(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
departments: {sales: {}}
roles: [rep]
accounts:
  bob: {department: sale, roles: [rep]}
""")
    assert _found(tmp_path) == [
        (3, "SA102", "roles: expected a mapping (key: value), not a list"),
        (5, "SA120", "account 'bob' is in unknown department 'sale'"),  # no SA130 for rep
    ]
    assert _issues(tmp_path)[1].hint == "did you mean 'sales'?"


def test_a_broken_vocabulary_or_field_list_leaves_only_what_depends_on_it_unchecked(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
resources: [customer]
fields:
  customer: name
  order: [total]
departments: {sales: {}}
roles:
  rep:
    permissions:
      - scope: own
        customer: [raed]
    fields:
      customer: {phon: visible}
accounts:
  bob: {department: sale, roles: [rep]}
""")
    found = _found(tmp_path)
    # resources is not a mapping: no vocabulary check (raed, order) is made against nothing; the
    # field list of customer is broken: no field check for it; the department still is.
    assert [(line, code) for line, code, _ in found] == [(2, "SA102"), (4, "SA102"), (15, "SA120")]


def test_broken_field_sections_and_keys(tmp_path: Path) -> None:
    _write(tmp_path, """domain: acme
description: [not, text]
resources: {customer: [read]}
fields: [name]
roles:
  rep:
    fields:
      customer: {phone: visible}
  5: {}
accounts:
  bob: {roles: [rep, nobody]}
""")
    found = _found(tmp_path)
    assert [(line, code) for line, code, _ in found] == [(2, "SA102"), (4, "SA102"), (9, "SA102"),
                                                         (11, "SA130")]
    assert found[2][2] == "roles.5: expected text, not the number 5"


def test_a_failed_key_is_left_out_of_the_salvaged_document() -> None:
    from salesauthz.models._yaml import parse_yaml
    from salesauthz.models.validate import validate_schema

    parsed = parse_yaml("domain: acme\naccounts: {bob: {roles: rep}}\n", "a.yaml")
    document, issues = validate_schema(parsed.data, "a.yaml", parsed.positions)
    assert document is not None
    bob = document.document.accounts["bob"]
    assert bob is not None
    assert "roles" not in bob.model_fields_set
    assert [i.line for i in issues] == [2]

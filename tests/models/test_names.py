"""Names no store can hold (a lone surrogate, a NUL) are refused when validated, naming the
value, so they never reach a store: policy documents (the ``Name`` type) and rules
(``check_rule``), through the SQL stores too."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from salesauthz import Authorizer, PolicyError
from salesauthz._rules import check_rule
from salesauthz.adapters import open_adapter
from salesauthz.audit import AuditDraft
from salesauthz.models import DomainDocument
from salesauthz.models.validate import issues_from_validation_error
from tests.adapters._services import postgres_schema

SURROGATES = ["\ud800", "rep\udfff", "\udc80华东"]


@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("place", ["domain", "account", "role", "department", "action"])
def test_a_document_name_with_a_lone_surrogate_is_refused(name: str, place: str) -> None:
    document: dict[str, object] = {"domain": "acme", "resources": {"customer": ["read"]}}
    if place == "domain":
        document["domain"] = name
    elif place == "account":
        document["accounts"] = {name: {}}
    elif place == "role":
        document["accounts"] = {"bob": {"roles": [name]}}
    elif place == "department":
        document["departments"] = {"east": {"parent": name}}
    else:
        document["resources"] = {"customer": [name]}
    with pytest.raises(ValidationError) as caught:
        DomainDocument.model_validate(document)
    issues = issues_from_validation_error(caught.value, "acme.yaml", {})
    text = " ".join(str(i) for i in issues)
    surrogate = next(c for c in name if 0xD800 <= ord(c) <= 0xDFFF)
    assert f"{name!r} contains a lone surrogate (U+{ord(surrogate):04X})" in text
    text.encode("utf-8")  # the message itself can be printed: the value is shown escaped


def test_a_document_name_with_nul_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"'a\\x00b' contains a NUL character"):
        DomainDocument.model_validate({"domain": "a\x00b"})


def test_names_that_are_unusual_but_valid_text_are_kept() -> None:
    names = ["华东一组", "a,b", "it's", "\U0001f600", "\ufffd", "\u202eevil"]
    document = DomainDocument.model_validate({"domain": "acme", "departments": {n: {} for n in names}})
    assert list(document.departments) == names


@pytest.mark.parametrize("rule", [
    ("p3", "\ud800", "acme", "active"),
    ("p4", "rep", "acme\udfff"),
    ("p", "rep", "acme", "customer", "read", "own", "\ud83d"),
])
def test_check_rule_refuses_a_lone_surrogate_naming_the_value(rule: tuple[str, ...]) -> None:
    problem = check_rule(rule)
    assert problem is not None
    assert "lone surrogate" in problem
    bad = next(v for v in rule if any(0xD800 <= ord(c) <= 0xDFFF for c in v))
    assert repr(bad) in problem


def test_from_rules_refuses_a_lone_surrogate() -> None:
    with pytest.raises(PolicyError, match="lone surrogate"):
        Authorizer.from_rules([("p3", "bob\ud800", "acme", "active")])


def _refused_by_store(url: str) -> None:
    good = ("p4", "rep", "acme")
    store = open_adapter(url)
    try:
        store.apply([good], [])
        with pytest.raises(PolicyError, match=r"'bob\\ud800' contains a lone surrogate"):
            store.apply([("p3", "bob\ud800", "acme", "active")], [good],
                        [AuditDraft(0.0, "test", "acme", "grant", "bob", (), ())])
        assert store.load(["acme"]) == [good]  # nothing changed, no UnicodeEncodeError
        assert store.load_audit("acme") == []
    finally:
        store.close()


def test_sqlite_store_refuses_it_before_writing(tmp_path: Path) -> None:
    _refused_by_store(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_store_refuses_it_before_writing() -> None:
    with postgres_schema() as url:
        _refused_by_store(url)

"""Properties of the lints on random organisations (hostile names included): ``check`` never
fails on a valid organisation, and SA201 agrees with the decision engine."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from tests.conftest import examples
from tests.strategies import FIXED_NOW, Organisation, organisations

from salesauthz import Authorizer, Record
from salesauthz import _engine as engine
from salesauthz.checker.lint import check_directory


def _natural_records(authz: Authorizer, domain: str) -> list[tuple[str | None, str | None]]:
    index = authz._snapshot(domain)
    assert index is not None
    records: list[tuple[str | None, str | None]] = [
        (name, info.department if info.department in index.department_parent else None)
        for name, info in index.accounts.items() if info.status is not None]
    records += [(None, department) for department in index.department_parent]
    records.append((None, None))  # a record with neither owner nor department: only `all` reaches it
    return records


def _ancestors_active(authz: Authorizer, domain: str, account: str) -> bool:
    index = authz._snapshot(domain)
    assert index is not None
    seen = {account}
    parent = index.account(account).parent
    while parent is not None and parent not in seen:
        if index.account(parent).status != "active":
            return False
        seen.add(parent)
        parent = index.account(parent).parent
    return True


@settings(max_examples=examples(30))
@given(organisations())
def test_sa201_flags_exactly_the_sub_accounts_with_dead_rights(org: Organisation) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for number, document in enumerate(org.documents):
            (Path(scratch) / f"domain-{number}.yaml").write_text(
                yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        result = check_directory(scratch, now=FIXED_NOW)
    assert result.errors == [], [str(f) for f in result.errors]
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    indexes = engine.compile_domains(org.rules)
    for number, domain in enumerate(org.domains):
        index = indexes[domain]
        here = [f for f in result.findings if (f.file or "").endswith(f"domain-{number}.yaml")]
        flagged = {name for name in org.accounts(domain)
                   if any(f.code == "SA201" and f"sub-account {name!r}" in f.message for f in here)}
        for account in org.accounts(domain):
            info = index.account(account)
            if info.parent is None or info.status != "active" \
                    or not _ancestors_active(authz, domain, account):
                assert account not in flagged
                continue
            # A dead right: the account's own roles and grants reach a natural record, the
            # decision engine denies it (only the ceiling can).
            dead = any(
                coverage.covers(owner, department)
                and not authz.check(account, action, Record(typ, owner, department), domain=domain)
                for (typ, action), coverage in engine.own_map(index, account, FIXED_NOW)[0].items()
                for owner, department in _natural_records(authz, domain)
            )
            assert dead == (account in flagged), (domain, account, [str(f) for f in result.findings])

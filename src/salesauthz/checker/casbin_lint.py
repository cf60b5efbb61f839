"""``salesauthz check --target casbin``: names a Casbin store cannot hold (SA210).

A ``casbin+`` store refuses a value that Casbin's line-based policy loaders would not give back
unchanged (:func:`salesauthz.casbin.value_problem`: a comma outside brackets, an unbalanced
bracket, surrounding whitespace, a line feed). This lint finds such names in the policy files,
at their first place in each document, before an import into such a store fails.
"""

from __future__ import annotations

from collections.abc import Iterator

from salesauthz.casbin import value_problem
from salesauthz.models.documents import (
    AccountDocument,
    CustomScope,
    DomainDocument,
    FieldRuleDocument,
    PermissionSet,
    RoleDocument,
)
from salesauthz.models.loader import LoadedPolicy

from .findings import TARGET_CODES, Finding

__all__ = ["TARGETS", "target_findings"]

TARGETS = ("casbin",)
"""The storage targets ``check --target`` knows."""

PathKey = tuple[str | int, ...]


def target_findings(policy: LoadedPolicy, target: str | None) -> list[Finding]:
    """The findings of the lints for ``target`` (none without a target)."""
    if target is None:
        return []
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    findings: list[Finding] = []
    severity = TARGET_CODES["SA210"][0]
    for sourced in policy.documents:
        reported: set[str] = set()
        for path, kind, name in _names(sourced.document):
            if name in reported:
                continue
            problem = value_problem(name)
            if problem is None:
                continue
            reported.add(name)
            issue = sourced.issue(path, f"{kind} {name!r} cannot be stored in a Casbin store: {problem}",
                                  "rename it, or keep the rules in a sqlite: or postgresql: store, which "
                                  "holds any text (casbin+ stores refuse it)", "SA210")
            findings.append(Finding.from_issue(issue, severity))
    return findings


def _names(document: DomainDocument) -> Iterator[tuple[PathKey, str, str]]:
    """Every name a document writes, with where, in document order."""
    yield ("domain",), "domain", document.domain
    for typ, actions in document.resources.items():
        yield ("resources", typ), "resource type", typ
        for i, action in enumerate(actions):
            yield ("resources", typ, i), "action", action
    for typ, field_names in document.fields.items():
        for i, field_name in enumerate(field_names):
            yield ("fields", typ, i), "field", field_name
    for name, department in document.departments.items():
        yield ("departments", name), "department", name
        if department is not None and department.parent is not None:
            yield ("departments", name, "parent"), "department", department.parent
    for name, maybe_role in document.roles.items():
        role = maybe_role or RoleDocument()
        yield ("roles", name), "role", name
        for i, inherited in enumerate(role.inherits):
            yield ("roles", name, "inherits", i), "role", inherited
        yield from _permissions(("roles", name, "permissions"), role.permissions)
        for typ, specs in role.fields.items():
            for field_name, spec in specs.items():
                yield ("roles", name, "fields", typ, field_name), "field", field_name
                if isinstance(spec, FieldRuleDocument) and isinstance(spec.scope, CustomScope):
                    for k, listed in enumerate(spec.scope.custom):
                        yield ((*("roles", name, "fields", typ, field_name), "scope", "custom", k),
                               "department", listed)
    for name, maybe_account in document.accounts.items():
        account = maybe_account or AccountDocument()
        yield ("accounts", name), "account", name
        if account.department is not None:
            yield ("accounts", name, "department"), "department", account.department
        if account.parent is not None:
            yield ("accounts", name, "parent"), "account", account.parent
        for i, role_name in enumerate(account.role_names):
            yield ("accounts", name, "roles", i), "role", role_name
        for i, auxiliary in enumerate(account.also_in):
            yield ("accounts", name, "also_in", i), "department", auxiliary
        if account.reports_to is not None:
            yield ("accounts", name, "reports_to"), "account", account.reports_to
        yield from _permissions(("accounts", name, "grants"), account.grants)


def _permissions(path: PathKey, sets: list[PermissionSet]) -> Iterator[tuple[PathKey, str, str]]:
    for i, permission_set in enumerate(sets):
        if isinstance(permission_set.scope, CustomScope):
            for k, department in enumerate(permission_set.scope.custom):
                yield (*path, i, "scope", "custom", k), "department", department
        for typ, actions in permission_set.actions.items():
            yield (*path, i, typ), "resource type", typ
            for j, action in enumerate(actions):
                yield (*path, i, typ, j), "action", action

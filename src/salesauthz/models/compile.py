"""Policy documents → Casbin rules, and back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.conditions import Condition, canonical, decode_value, encode_value
from salesauthz.scopes import Scope, ScopeKind, parse_scope

from .documents import (
    AccountDocument,
    CustomScope,
    DepartmentDocument,
    DomainDocument,
    FieldRuleDocument,
    PermissionSet,
    RoleDocument,
    ScopeSpec,
    TimedRole,
)

__all__ = ["compile_document", "decompile_rules", "scope_of"]


def scope_of(spec: ScopeSpec) -> Scope:
    if isinstance(spec, CustomScope):
        return Scope.of(ScopeKind.CUSTOM, spec.custom)
    return Scope.of(spec)


def _permission_rules(subject: str, domain: str, sets: Iterable[PermissionSet],
                      ptype: str = R.PERMISSION) -> list[Rule]:
    rules: list[Rule] = []
    for permission_set in sets:
        expires = R.format_expiry(permission_set.expires)
        scope = scope_of(permission_set.scope)
        condition = Condition.of(permission_set.where, permission_set.requires)
        if condition is not None:
            scope = Scope(scope.kind, scope.departments, condition)
        for scope_text in scope.encode():
            for typ, actions in permission_set.actions.items():
                for action in actions:
                    rules.append((ptype, subject, domain, typ, action, scope_text, expires))
    return rules


def compile_document(document: DomainDocument) -> list[Rule]:
    """The Casbin rules of one domain document (no validation: see ``validate``)."""
    d = document.domain
    rules: list[Rule] = []
    vocabulary = {**{t: list(a) for t, a in R.BUILTIN_VOCABULARY.items()}, **document.resources}
    for typ, actions in vocabulary.items():
        for action in actions:
            rules.append((R.VOCABULARY, d, typ, action))
    for typ, attributes in document.resource_attributes.items():
        for attribute, kind in attributes.items():
            rules.append((R.RESOURCE_ATTRIBUTE, d, typ, attribute, kind))
    if document.time_zone is not None:
        rules.append((R.SETTING, d, "time_zone", document.time_zone))
    if document.sensitive_actions is not None:
        rules.append((R.SETTING, d, "sensitive_actions", canonical(document.sensitive_actions)))
    for typ, field_names in document.fields.items():
        for field_name in field_names:
            rules.append((R.FIELD, d, typ, field_name))
    for name, department in document.departments.items():
        parent = department.parent if department is not None else None
        rules.append((R.DEPARTMENT, name, parent or "", d))
        if department is not None:
            rules.extend(_permission_rules(name, d, department.grants, R.DEPARTMENT_GRANT))
    for name, role in document.roles.items():
        rules.append((R.ROLE, name, d))
        if role is None:
            continue
        for inherited in role.inherits:
            rules.append((R.ROLE_LINK, name, inherited, d))
        rules.extend(_permission_rules(name, d, role.permissions))
        for typ, specs in role.fields.items():
            for field_name, spec in specs.items():
                if isinstance(spec, str):
                    rules.append((R.FIELD_RULE, name, d, typ, field_name, spec, ""))
                    continue
                for scope_text in scope_of(spec.scope).encode():
                    rules.append((R.FIELD_RULE, name, d, typ, field_name, spec.mode, scope_text))
                if spec.otherwise is not None:
                    rules.append((R.FIELD_RULE, name, d, typ, field_name, spec.otherwise, ""))
    for typ, levels in document.sharing.items():
        for level, actions in levels.items():
            for action in actions:
                rules.append((R.SHARE_LEVEL, d, typ, level, action))
    for name, account in document.accounts.items():
        account = account or AccountDocument()
        rules.append((R.ACCOUNT, name, d, account.status))
        if account.department is not None:
            rules.append((R.MEMBERSHIP, name, account.department, d))
        for auxiliary in account.also_in:
            rules.append((R.AUXILIARY, name, auxiliary, d))
        if account.reports_to is not None:
            rules.append((R.REPORTS_TO, name, account.reports_to, d))
        if account.parent is not None:
            rules.append((R.PARENT, name, account.parent, d))
        for attribute, value in account.attributes.items():
            rules.append((R.ACCOUNT_ATTRIBUTE, name, d, attribute, encode_value(value)))
        for entry in account.roles:
            if isinstance(entry, TimedRole):
                rules.append((R.TIMED_ROLE, name, entry.role, d, R.format_expiry(entry.expires)))
            else:
                rules.append((R.ROLE_LINK, name, entry, d))
        rules.extend(_permission_rules(name, d, account.grants))
    return list(dict.fromkeys(rules))


def _permission_sets(rules: list[Rule]) -> list[PermissionSet]:
    """Group ``p`` rules of one subject back into permission sets (one per scope+expiry)."""
    # Merge custom departments of the same (type, action, expires) into one custom scope.
    # Conditioned scopes group by their condition too (its canonical stored text).
    custom: dict[tuple[str, str, str, str], set[str]] = {}
    plain: list[tuple[str, str, str, str, str]] = []
    conditions: dict[str, Condition] = {}
    for _, _sub, _dom, typ, action, scope_text, expires in rules:
        scope = parse_scope(scope_text)
        condition_key = ""
        if scope.condition is not None:
            condition_key = repr(scope.condition.stored())
            conditions[condition_key] = scope.condition
        if scope.kind is ScopeKind.CUSTOM:
            custom.setdefault((typ, action, expires, condition_key), set()).update(scope.departments)
        else:
            plain.append((scope.kind.value, expires, condition_key, typ, action))
    groups: dict[tuple[object, str, str], dict[str, list[str]]] = {}
    for word, expires, condition_key, typ, action in plain:
        groups.setdefault((word, expires, condition_key), {}).setdefault(typ, []).append(action)
    for (typ, action, expires, condition_key), depts in custom.items():
        key = (tuple(sorted(depts)), expires, condition_key)
        groups.setdefault(key, {}).setdefault(typ, []).append(action)
    sets = []
    for (scope_key, expires, condition_key), types in sorted(groups.items(),
                                                             key=lambda kv: repr(kv[0])):
        spec: object = {"custom": list(scope_key)} if isinstance(scope_key, tuple) else scope_key
        body: dict[str, object] = {"scope": spec}
        if expires:
            body["expires"] = expires
        if condition_key:
            body.update(conditions[condition_key].stored())
        for typ in sorted(types):
            body[typ] = sorted(types[typ])
        sets.append(PermissionSet.model_validate(body))
    return sets


def _field_specs(rules: list[Rule]) -> dict[str, dict[str, Any]]:
    """Group ``p5`` rules of one role back into field specs."""
    grouped: dict[tuple[str, str], list[Rule]] = {}
    for rule in rules:
        grouped.setdefault((rule[3], rule[4]), []).append(rule)
    specs: dict[str, dict[str, Any]] = {}
    for (typ, field_name), field_rules in sorted(grouped.items()):
        everywhere = [r[5] for r in field_rules if not r[6]]
        conditional = [r for r in field_rules if r[6]]
        spec: Any
        if not conditional:
            spec = everywhere[0] if len(everywhere) == 1 else _most_permissive(everywhere)
        else:
            scopes = [parse_scope(r[6]) for r in conditional]
            departments = sorted(d for s in scopes for d in s.departments)
            scope_spec: Any = {"custom": departments} if departments else scopes[0].kind.value
            spec = FieldRuleDocument.model_validate({
                "mode": _most_permissive([r[5] for r in conditional]),
                "scope": scope_spec,
                "otherwise": _most_permissive(everywhere) if everywhere else None,
            })
        specs.setdefault(typ, {})[field_name] = spec
    return specs


def _most_permissive(modes: list[str]) -> str:
    return min(modes, key=R.FIELD_MODES.index)


def decompile_rules(rules: Iterable[Rule]) -> list[DomainDocument]:
    """Rebuild one document per domain from Casbin rules (the inverse of
    :func:`compile_document` up to ordering: ``compile(decompile(rules)) == rules`` as sets)."""
    by_domain: dict[str, list[Rule]] = {}
    for rule in rules:
        by_domain.setdefault(R.domain_of(rule), []).append(rule)
    documents = []
    for domain in sorted(by_domain):
        domain_rules = sorted(by_domain[domain])
        roles = {r[1] for r in domain_rules if r[0] == R.ROLE}
        resources: dict[str, list[str]] = {}
        departments: dict[str, DepartmentDocument | None] = {}
        department_grants: dict[str, list[Rule]] = {}
        links: dict[str, list[str]] = {}
        permissions: dict[str, list[Rule]] = {}
        accounts: dict[str, dict[str, object]] = {}
        declared_fields: dict[str, list[str]] = {}
        field_rules: dict[str, list[Rule]] = {}
        sharing: dict[str, dict[str, list[str]]] = {}
        timed: dict[str, list[TimedRole]] = {}
        auxiliary: dict[str, list[str]] = {}
        resource_attributes: dict[str, dict[str, Any]] = {}
        time_zone: str | None = None
        sensitive: list[str] | None = None
        for rule in domain_rules:
            ptype = rule[0]
            if ptype == R.ACCOUNT_ATTRIBUTE:
                attributes = accounts.setdefault(rule[1], {}).setdefault("attributes", {})
                assert isinstance(attributes, dict)
                attributes[rule[3]] = decode_value(rule[4])
            elif ptype == R.RESOURCE_ATTRIBUTE:
                resource_attributes.setdefault(rule[2], {})[rule[3]] = rule[4]
            elif ptype == R.SETTING and rule[2] == "time_zone":
                time_zone = rule[3]
            elif ptype == R.SETTING and rule[2] == "sensitive_actions":
                sensitive = json.loads(rule[3])
            elif ptype == R.VOCABULARY:
                resources.setdefault(rule[2], []).append(rule[3])
            elif ptype == R.DEPARTMENT:
                departments[rule[1]] = DepartmentDocument(parent=rule[2]) if rule[2] else None
            elif ptype == R.ROLE_LINK:
                links.setdefault(rule[1], []).append(rule[2])
            elif ptype == R.PERMISSION:
                permissions.setdefault(rule[1], []).append(rule)
            elif ptype == R.DEPARTMENT_GRANT:
                department_grants.setdefault(rule[1], []).append(rule)
            elif ptype == R.ACCOUNT:
                accounts.setdefault(rule[1], {})["status"] = rule[3]
            elif ptype == R.MEMBERSHIP:
                accounts.setdefault(rule[1], {})["department"] = rule[2]
            elif ptype == R.PARENT:
                accounts.setdefault(rule[1], {})["parent"] = rule[2]
            elif ptype == R.FIELD:
                declared_fields.setdefault(rule[2], []).append(rule[3])
            elif ptype == R.FIELD_RULE:
                field_rules.setdefault(rule[1], []).append(rule)
            elif ptype == R.SHARE_LEVEL:
                sharing.setdefault(rule[2], {}).setdefault(rule[3], []).append(rule[4])
            elif ptype == R.AUXILIARY:
                auxiliary.setdefault(rule[1], []).append(rule[2])
                accounts.setdefault(rule[1], {})
            elif ptype == R.REPORTS_TO:
                accounts.setdefault(rule[1], {})["reports_to"] = rule[2]
            elif ptype == R.TIMED_ROLE:
                timed.setdefault(rule[1], []).append(
                    TimedRole(role=rule[2], expires=datetime.fromtimestamp(R.parse_expiry(rule[4]), UTC)))
        for subject in set(links) | set(permissions) | set(timed):
            if subject not in roles:
                accounts.setdefault(subject, {})
        for name, granted in department_grants.items():
            parent = (departments.get(name) or DepartmentDocument()).parent
            departments[name] = DepartmentDocument(parent=parent, grants=_permission_sets(granted))
        for typ, actions in R.BUILTIN_VOCABULARY.items():
            if sorted(resources.get(typ, [])) == sorted(actions):
                resources.pop(typ, None)
        role_documents: dict[str, RoleDocument | None] = {
            name: RoleDocument(
                inherits=sorted(links.get(name, [])),
                permissions=_permission_sets(permissions.get(name, [])),
                fields=_field_specs(field_rules.get(name, [])),
            )
            for name in sorted(roles)
        }
        account_documents: dict[str, AccountDocument | None] = {}
        for name in sorted(accounts):
            fields = dict(accounts[name])
            permanent = sorted(links.get(name, []))
            latest: dict[str, TimedRole] = {}  # a role assigned several ways: the widest wins
            for entry in timed.get(name, []):
                if entry.role not in permanent and (entry.role not in latest
                                                    or latest[entry.role].expires < entry.expires):
                    latest[entry.role] = entry
            fields["roles"] = [*permanent, *(latest[role] for role in sorted(latest))]
            fields["grants"] = _permission_sets(permissions.get(name, []))
            if name in auxiliary:
                fields["also_in"] = auxiliary[name]
            account_documents[name] = AccountDocument.model_validate(fields)
        documents.append(DomainDocument(
            domain=domain,
            resources={t: sorted(a) for t, a in sorted(resources.items())},
            fields={t: sorted(f) for t, f in sorted(declared_fields.items())},
            departments=dict(sorted(departments.items())),
            roles=role_documents,
            sharing={t: {lv: sorted(a) for lv, a in sorted(levels.items())}
                     for t, levels in sorted(sharing.items())},
            accounts=account_documents,
            resource_attributes={t: dict(sorted(a.items()))
                                 for t, a in sorted(resource_attributes.items())},
            time_zone=time_zone,
            sensitive_actions=sensitive,
        ))
    return documents

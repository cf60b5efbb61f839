"""Explanations: the same decision as the compiled check, told step by step (not the hot path)."""

from __future__ import annotations

from ._index import DomainIndex, Permission
from .authorizer import Decision, Record, permission_label
from .scopes import ScopeKind

__all__ = ["explain"]


def _record_text(record: Record, department: str | None) -> str:
    owner = f"owned by {record.owner}" if record.owner else "with no owner"
    where = f"in {department}" if department else "in no known department"
    return f"{record.type} record {owner} {where}"


def _scope_text(index: DomainIndex, account: str, permission: Permission) -> str:
    scope = permission.scope
    home = index.department_of(account)
    if scope.kind is ScopeKind.OWN:
        return f"records owned by {account}"
    if scope.kind is ScopeKind.ALL:
        return f"every record of domain {index.name}"
    if scope.kind is ScopeKind.TEAM:
        return f"records owned by {account} or in its department {home}" if home else \
            f"records owned by {account} (it has no department)"
    if scope.kind is ScopeKind.DEPARTMENT_TREE:
        return f"records owned by {account} or in {home} and below" if home else \
            f"records owned by {account} (it has no department)"
    return f"records owned by {account} or in {', '.join(sorted(scope.departments))} and below"


def _role_path(index: DomainIndex, account: str, role: str) -> list[str]:
    """Assigned role → … → ``role`` (breadth first, shortest)."""
    starts = sorted(index.account(account).roles)
    paths = {r: [r] for r in starts}
    queue = list(starts)
    while queue:
        current = queue.pop(0)
        if current == role:
            return paths[current]
        for inherited in sorted(index.role_parents.get(current, ())):
            if inherited not in paths:
                paths[inherited] = [*paths[current], inherited]
                queue.append(inherited)
    return [role]


def explain(index: DomainIndex | None, account: str, action: str, record: Record, domain: str,
            now: float, _depth: int = 0) -> Decision:
    def deny(reason: str, steps: list[str], rules: tuple[tuple[str, ...], ...] = ()) -> Decision:
        return Decision(False, reason, account, action, record, domain, rules, None, None,
                        (*steps, "deny: " + reason))

    if index is None:
        return deny(f"domain {domain!r} does not exist", [])
    info = index.accounts.get(account)
    if info is None or info.status is None:
        return deny(f"account {account!r} does not exist in domain {domain!r}", [])
    if info.status != "active":
        return deny(f"account {account} is {info.status}, and only active accounts are allowed anything",
                    [], ((("p3", account, domain, info.status)),))
    known = index.vocabulary.get(record.type)
    if known is None:
        return deny(f"{record.type!r} is not a resource type of domain {domain}", [])
    if action not in known:
        return deny(f"{action!r} is not an action on {record.type} in domain {domain}", [])
    department = record.department or index.department_of(record.owner)
    subject = _record_text(record, department)
    steps: list[str] = [f"{account} asks to {action} a {subject}"]
    candidates: list[tuple[str | None, Permission, bool]] = []
    for role, permission in index.permissions_of(account):
        if not any(k == (record.type, action) for k in index.expand(permission.type, permission.action)):
            continue
        if permission.expires is not None and permission.expires <= now:
            steps.append(f"grant {permission_label(permission)} expired; ignored")
            continue
        coverage = index.scope_coverage(account, permission.scope)
        candidates.append((role, permission, coverage.covers(record.owner, department)))
    if not candidates:
        return deny(f"no role or grant of {account} gives {record.type}:{action}", steps)
    for role, permission, covered in candidates:
        source = "direct grant" if role is None else "role " + " → ".join(_role_path(index, account, role))
        verdict = "covers" if covered else "does not cover"
        steps.append(f"{source}: {permission_label(permission)} reaches "
                     f"{_scope_text(index, account, permission)}, which {verdict} this record")
    winners = [(role, p) for role, p, covered in candidates if covered]
    if not winners:
        held = ", ".join(sorted({permission_label(p) for _, p, _ in candidates}))
        return deny(f"{account} holds {held}, which does not reach a {subject}", steps,
                    tuple(p.rule for _, p, _ in candidates))
    role, permission = winners[0]
    rules = tuple(p.rule for _, p in winners)
    if info.parent is not None:
        if _depth > len(index.accounts):  # a parent cycle in bad data
            return deny("the sub-account chain has a cycle", steps, rules)
        above = explain(index, info.parent, action, record, domain, now, _depth + 1)
        steps.append(f"{account} is a sub-account of {info.parent}, so it is capped by what "
                     f"{info.parent} may do:")
        steps.extend("  " + s for s in above.steps)
        if not above.allowed:
            return deny(f"{account} would be allowed, but its parent {info.parent} is not: "
                        f"{above.reason}", steps, (*rules, ("g4", account, info.parent, domain)))
    source = "a direct grant" if role is None else f"role {role}"
    reason = (f"allowed by {source}: {permission_label(permission)} reaches "
              f"{_scope_text(index, account, permission)}")
    if info.parent is not None:
        reason += f", within the ceiling of parent {info.parent}"
    return Decision(True, reason, account, action, record, domain, rules, role, permission.scope,
                    (*steps, "allow: " + reason))

"""Explanations: the engine's decision, told from its provenance (not the hot path).

The verdict is :func:`~.semantics.effective`'s — the map ``check`` caches — so ``explain`` can
never allow what ``check`` denies. The story is told from :func:`sources` (which role
or grant gives the right, through which inheritance path, what its scope reaches, which grants
expired) and from the parent chain (which ancestor caps it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from salesauthz import _rules as R
from salesauthz.scopes import (
    ConditionGuard,
    Coverage,
    RequirementGuard,
    Scope,
    ScopeKind,
    ShareGuard,
)
from salesauthz.values import Decision, Record

from .semantics import ACTIVE, Holding, chain, effective, expand, expired, holdings, keyed_coverage
from .snapshot import Key, Permission, Snapshot

__all__ = ["Source", "explain", "permission_label", "sources"]

logger = logging.getLogger("salesauthz")


class Source(NamedTuple):
    """Provenance of one right: a holding naming the key, what its scope reaches for the
    account, and whether it has expired."""

    holding: Holding
    coverage: Coverage
    expired: bool


def sources(snapshot: Snapshot, account: str, key: Key, now: float) -> list[Source]:
    """The account's own holdings that give ``key`` (expired ones included, marked)."""
    found: list[Source] = []
    memo: dict[tuple[Scope, Key | None], Coverage] = {}
    for held in holdings(snapshot, account):
        permission = held.permission
        if key not in expand(snapshot, permission.type, permission.action):
            continue
        coverage = keyed_coverage(snapshot, account, permission.scope, key, memo)
        found.append(Source(held, coverage, expired(permission.expires, now)))
    return found


def permission_label(permission: Permission) -> str:
    """``customer:read@team`` for a permission."""
    return f"{permission.type}:{permission.action}@{permission.scope}"


def explain(snapshot: Snapshot | None, account: str, action: str, record: Record, domain: str,
            now: float, context: Mapping[str, Any] | None = None) -> Decision:
    """The decision ``check`` makes, with the reason and the rules behind it (``context``: the
    request's, ``now`` included)."""
    context = context if context is not None else {"now": now}
    told = _tell(snapshot, account, action, record, domain, now, context)
    if snapshot is None or told.allowed == _verdict(snapshot, account, action, record, now,
                                                    context):
        return told
    # The story and the engine disagree: a bug. Never let the story decide.
    logger.error("salesauthz explain: the explanation disagrees with the decision for %r", told)
    return Decision(False, "internal error: the explanation disagrees with the engine; denied",
                    account, action, record, domain)


def _verdict(snapshot: Snapshot, account: str, action: str, record: Record, now: float,
             context: Mapping[str, Any]) -> bool:
    coverage = effective(snapshot, account, now)[0].get((record.type, action))
    return coverage is not None and coverage.covers(record.owner, record.department, snapshot.homes,
                                                    record.shares, record.attributes, context)


def _condition_failures(coverage: Coverage, record: Record, department: str | None, action: str,
                        context: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Why the guarded terms whose scope covers the record still do not: the failing
    conditions (``region is 'West'``) and requirements (``export needs a second factor; …``),
    and the context keys those requirements missed."""
    phrases: list[str] = []
    missing: list[str] = []
    shares = tuple(record.shares)
    for term in sorted(coverage.guarded, key=repr):
        if not term.base.covers(record.owner, department, None):
            continue
        if not all(g.matches(shares) for g in term.guards if isinstance(g, ShareGuard)):
            continue
        for guard in sorted(term.guards, key=str):
            if isinstance(guard, ConditionGuard):
                phrases.extend(guard.failing(record.owner, record.attributes))
            elif isinstance(guard, RequirementGuard):
                for key, why in guard.failing(context):
                    phrases.append(f"{action} {why}")
                    missing.append(key)
    return list(dict.fromkeys(phrases)), sorted(set(missing))


def _record_text(record: Record, department: str | None) -> str:
    owner = f"owned by {record.owner}" if record.owner else "with no owner"
    where = f"in {department}" if department else "in no known department"
    return f"{record.type} record {owner} {where}"


def _departments_text(departments: tuple[str, ...]) -> str:
    if len(departments) == 1:
        return f"its department {departments[0]}"
    return f"its departments {', '.join(departments)}"


def _scope_text(snapshot: Snapshot, account: str, permission: Permission) -> str:
    scope = permission.scope
    departments = snapshot.departments_of(account)
    if scope.kind is ScopeKind.OWN:
        return f"records owned by {account}"
    if scope.kind is ScopeKind.ALL:
        return f"every record of domain {snapshot.name}"
    if scope.kind is ScopeKind.SHARED:
        levels = sorted(snapshot.levels_with(permission.type, permission.action)) \
            if permission.type != R.WILDCARD and permission.action != R.WILDCARD else []
        at = f" {'/'.join(levels)}" if levels else ""
        return f"records shared{at} with {account} or with {_departments_text(departments)}" \
            if departments else f"records shared{at} with {account}"
    if scope.kind in (ScopeKind.SUBORDINATES, ScopeKind.SUBORDINATE_TREE):
        who = "its direct reports" if scope.kind is ScopeKind.SUBORDINATES \
            else "anyone below it in the reporting line"
        return f"records owned by {account} or by {who}"
    if scope.kind in (ScopeKind.TEAM, ScopeKind.DEPARTMENT_TREE) and not departments:
        return f"records owned by {account} (it has no department)"
    if scope.kind is ScopeKind.TEAM:
        return f"records owned by {account} or in {_departments_text(departments)}"
    if scope.kind is ScopeKind.DEPARTMENT_TREE:
        places = " or ".join(departments)
        return f"records owned by {account} or in {places} and below"
    return f"records owned by {account} or in {', '.join(sorted(scope.departments))} and below"


def _how_covered(snapshot: Snapshot, account: str, permission: Permission, record: Record,
                 action: str) -> str:
    """What about the record made a covering ``shared`` or reporting-line scope cover it."""
    kind = permission.scope.kind
    if kind is ScopeKind.SHARED:
        levels = snapshot.levels_with(record.type, action)
        mine = set(snapshot.departments_of(account))
        for share in record.shares:
            if share.level not in levels:
                continue
            if share.account == account:
                return f" (shared with {account} {share.level})"
            if share.department is not None:
                below = [d for d in sorted(mine) if share.department in snapshot.ancestry(d)]
                if below:
                    through = "" if below[0] == share.department \
                        else f", above its department {below[0]}"
                    return f" (shared {share.level} with department {share.department}{through})"
    if kind in (ScopeKind.SUBORDINATES, ScopeKind.SUBORDINATE_TREE) and record.owner \
            and record.owner != account:
        line = [record.owner]
        superior = snapshot.account(record.owner).reports_to
        while superior is not None and superior != account and superior not in line:
            line.append(superior)
            superior = snapshot.account(superior).reports_to
        through = f" through {', '.join(line[1:])}" if len(line) > 1 else ""
        return f" (the owner {record.owner} reports to {account}{through})"
    return ""


def _source_text(snapshot: Snapshot, account: str, holding: Holding) -> str:
    """How the account holds a permission: a role path, a direct grant, or a grant to a
    department with the account's department that reaches it."""
    if holding.department is None:
        return "direct grant" if not holding.via else "role " + " → ".join(holding.via)
    granting = holding.department
    main = snapshot.account(account).department
    for department in snapshot.departments_of(account):
        if granting in snapshot.ancestry(department):
            which = "main" if department == main else "auxiliary"
            where = f"is {granting}" if department == granting \
                else f"{department} is below it"
            return f"grant to department {granting} ({account}'s {which} department {where})"
    return f"grant to department {granting}"  # (unreachable: holdings walked these departments)


def _tell(snapshot: Snapshot | None, account: str, action: str, record: Record, domain: str,
          now: float, context: Mapping[str, Any]) -> Decision:
    missing: list[str] = []

    def deny(reason: str, steps: list[str], rules: tuple[tuple[str, ...], ...] = ()) -> Decision:
        return Decision(False, reason, account, action, record, domain, rules, None, None,
                        (*steps, "deny: " + reason), (), tuple(sorted(set(missing))))

    if snapshot is None:
        return deny(f"domain {domain!r} does not exist", [])
    info = snapshot.accounts.get(account)
    if info is None or info.status is None:
        return deny(f"account {account!r} does not exist in domain {domain!r}", [])
    if info.status != ACTIVE:
        return deny(f"account {account} is {info.status}, and only active accounts are allowed "
                    "anything", [], ((R.ACCOUNT, account, domain, info.status),))
    known = snapshot.vocabulary.get(record.type)
    if known is None:
        return deny(f"{record.type!r} is not a resource type of domain {domain}", [])
    if action not in known:
        return deny(f"{action!r} is not an action on {record.type} in domain {domain}", [])
    department = record.department or snapshot.department_of(record.owner)
    subject = _record_text(record, department)
    steps: list[str] = [f"{account} asks to {action} a {subject}"]
    live: list[tuple[Source, bool]] = []
    conditions: list[str] = []
    for source in sources(snapshot, account, (record.type, action), now):
        label = permission_label(source.holding.permission)
        if source.expired:
            until = source.holding.until
            if until is not None and until <= now:
                steps.append(f"{_source_text(snapshot, account, source.holding)}: the assignment of role "
                             f"{source.holding.via[0]} expired at {R.format_expiry_at(until)}, "
                             f"so {label} is ignored")
            elif source.holding.department is not None:
                steps.append(f"{_source_text(snapshot, account, source.holding)}: {label} "
                             "expired; ignored")
            else:
                steps.append(f"grant {label} expired; ignored")
            continue
        covered = source.coverage.covers(record.owner, department, None, record.shares,
                                         record.attributes, context)
        live.append((source, covered))
        how = _how_covered(snapshot, account, source.holding.permission, record,
                           action) if covered else ""
        failures: list[str] = []
        if not covered and source.coverage.guarded:
            failures, lacking = _condition_failures(source.coverage, record, department, action,
                                                    context)
            missing.extend(lacking)
            conditions.extend(failures)
        verdict = ("covers this record but for its conditions: " + "; ".join(failures)
                   if failures else "covers" if covered else "does not cover")
        steps.append(f"{_source_text(snapshot, account, source.holding)}: {label} reaches "
                     f"{_scope_text(snapshot, account, source.holding.permission)}, which "
                     f"{verdict}{' this record' if covered or not failures else ''}{how}")
    if not live:
        return deny(f"no role or grant of {account} gives {record.type}:{action}", steps)
    winners = [source for source, covered in live if covered]
    if not winners:
        held = ", ".join(sorted({permission_label(s.holding.permission) for s, _ in live}))
        if conditions:
            return deny(f"{account} holds {held}, which covers this {subject} but for its "
                        f"conditions: {'; '.join(dict.fromkeys(conditions))}", steps,
                        tuple(s.holding.permission.rule for s, _ in live))
        return deny(f"{account} holds {held}, which does not reach a {subject}", steps,
                    tuple(s.holding.permission.rule for s, _ in live))
    first = winners[0]
    rules = tuple(s.holding.permission.rule for s in winners)
    if info.parent is not None:
        if chain(snapshot, account) is None:  # a parent cycle in bad stored data
            return deny("the sub-account chain has a cycle", steps, rules)
        above = _tell(snapshot, info.parent, action, record, domain, now, context)
        steps.append(f"{account} is a sub-account of {info.parent}, so it is capped by what "
                     f"{info.parent} may do:")
        steps.extend("  " + step for step in above.steps)
        if not above.allowed:
            missing.extend(above.missing_context)
            return deny(f"{account} would be allowed, but its parent {info.parent} is not: "
                        f"{above.reason}", steps, (*rules, (R.PARENT, account, info.parent, domain)))
    permission = first.holding.permission
    source_name = ("a " + _source_text(snapshot, account, first.holding)
                   if first.holding.role is None else f"role {first.holding.role}")
    reason = (f"allowed by {source_name}: {permission_label(permission)} reaches "
              f"{_scope_text(snapshot, account, permission)}"
              f"{_how_covered(snapshot, account, permission, record, action)}")
    if first.holding.until is not None:
        reason += f" (role {first.holding.via[0]} assigned until {R.format_expiry_at(first.holding.until)})"
    if info.parent is not None:
        reason += f", within the ceiling of parent {info.parent}"
    return Decision(True, reason, account, action, record, domain, rules, first.holding.role,
                    permission.scope, (*steps, "allow: " + reason), first.holding.via)

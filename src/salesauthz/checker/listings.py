"""``salesauthz explain``, ``who-can`` and ``what-can``: questions about one domain's rules."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import Key, Snapshot
from salesauthz._wording import capped, count, did_you_mean
from salesauthz.errors import UsageError
from salesauthz.models.loader import Progress
from salesauthz.scopes import Scope, ScopeKind, ShareGuard
from salesauthz.values import Record, Share

from .analysis import (
    excess,
    live_sources,
    permission_text,
    requirements_met,
    scope_label,
    widest_scopes,
)
from .output import Output

__all__ = ["Source", "holders", "holders_if_shared", "open_source", "parse_share", "timed_roles",
           "what_can_rows", "who_can_rows"]


@dataclass(slots=True)
class Source:
    """The rules of a policy directory or a store, compiled, and what to call them in messages."""

    label: str
    snapshots: dict[str, Snapshot]
    now: float = field(default_factory=time.time)

    def snapshot(self, domain: str) -> Snapshot:
        found = self.snapshots.get(domain)
        if found is None:
            known = ", ".join(sorted(self.snapshots)) or "none"
            close = did_you_mean(domain, self.snapshots)
            raise UsageError(f"domain {domain!r} is not in {self.label} "
                             + (f"({close} domains: {known})" if close else f"(domains: {known})"))
        return found


def require_names(snapshot: Snapshot, *, account: str | None = None, action: str | None = None,
                  type: str | None = None, owner: str | None = None, department: str | None = None,
                  shares: tuple[Share, ...] = ()) -> None:
    """Raise :class:`UsageError` (with a "did you mean") for a name the domain does not define: a
    question about a misspelt name would otherwise be answered "nobody" or "deny", as if true."""
    domain = snapshot.name
    if type is not None and type not in snapshot.vocabulary:
        raise UsageError(_unknown("resource type", type, "", domain, snapshot.vocabulary))
    if action is not None and type is not None and action not in snapshot.vocabulary[type]:
        known = sorted(snapshot.vocabulary[type])
        message = _unknown("action", action, f" for {type}", domain, known)
        raise UsageError(message if message.endswith("?") else f"{message}; {type} has: {', '.join(known)}")
    accounts = [name for name, info in snapshot.accounts.items() if info.status is not None]
    for name, option in ((account, ""), (owner, " (--owner)")):
        if name is not None and name not in accounts:
            if name in snapshot.roles:
                raise UsageError(f"{name!r}{option} is a role of domain {domain!r}, not an account")
            raise UsageError(_unknown("account", name, option, domain, accounts))
    if department is not None and department not in snapshot.department_parent:
        raise UsageError(_unknown("department", department, "", domain, snapshot.department_parent))
    for share in shares:
        levels = snapshot.sharing.get(type or "", {})
        if not levels:
            raise UsageError(f"{type} declares no share levels in domain {domain!r}, so a share "
                             f"reaches no one (declare them under `sharing:`)")
        if share.level not in levels:
            message = _unknown("share level", share.level, f" for {type}", domain, levels)
            raise UsageError(message if message.endswith("?")
                             else f"{message}; {type} has: {', '.join(sorted(levels))}")
        if share.account is not None and share.account not in accounts:
            raise UsageError(_unknown("account", share.account, " (--share)", domain, accounts))
        if share.department is not None and share.department not in snapshot.department_parent:
            raise UsageError(_unknown("department", share.department, " (--share)", domain,
                                      snapshot.department_parent))


def parse_share(text: str) -> Share:
    """``read_write:account=rep_w1`` or ``read_only:department=service`` as a :class:`Share`."""
    level, colon, target = text.partition(":")
    kind, equals, name = target.partition("=")
    if not (colon and equals and level and name) or kind not in ("account", "department"):
        raise UsageError(f"--share {text!r}: write LEVEL:account=NAME or LEVEL:department=NAME, "
                         "e.g. read_write:account=rep_w1")
    return Share.checked(level, **{kind: name})


def _unknown(what: str, name: str, qualifier: str, domain: str, known: Iterable[str]) -> str:
    close = did_you_mean(name, known)
    return f"unknown {what} {name!r}{qualifier} in domain {domain!r}" + (f": {close}" if close else "")


def open_source(path: str | None, url: str | None, *, progress: Progress | None = None) -> Source:
    """The rules at ``url`` (a store, opened read-only) or in the directory ``path`` (default
    ``policies``); a ``path`` that names a store (``sqlite:///…``) is read as ``url``."""
    from salesauthz.errors import PolicyError, StorageError
    from salesauthz.models.loader import load_directory

    from .readonly import is_store

    if url is not None and path is not None:
        raise UsageError("give a policy directory or --url, not both")
    if path is not None and is_store(path):
        path, url = None, path
    if url is not None:
        from salesauthz.adapters import mask_url

        from .readonly import open_read_only

        try:
            store = open_read_only(url)
            try:
                states = engine.load_domains(store.load(), None, source=store.url)
            finally:
                store.close()
        except (StorageError, PolicyError) as exc:
            raise UsageError(f"cannot open {mask_url(url)}: {exc}") from None
        return Source(mask_url(url), {name: state.snapshot for name, state in states.items()
                                      if state.snapshot is not None and state.rules})
    directory = path or "policies"
    try:
        rules = load_directory(directory, progress=progress).rules
    except PolicyError as exc:
        raise UsageError(f"cannot load {directory} (run `salesauthz check {directory}`): {exc}") from None
    return Source(directory, engine.compile_domains(rules))


def explain(source: Source, account: str, action: str, type: str, *, owner: str | None,
            department: str | None, domain: str, out: Output, fmt: str,
            shares: tuple[Share, ...] = (), attributes: Mapping[str, Any] | None = None,
            context: Mapping[str, Any] | None = None) -> int:
    snapshot = source.snapshot(domain)  # an unknown domain is a usage error here, not a silent deny
    require_names(snapshot, account=account, action=action, type=type, owner=owner, department=department,
                  shares=shares)
    record = Record(type, owner=owner, department=department, shares=shares, attributes=attributes)
    if context is not None and "now" not in context:
        context = {**context, "now": source.now}
    decision = engine.explain(snapshot, account, action, record, domain, source.now, context)
    if fmt == "json":
        out.data({
            "allowed": decision.allowed,
            "account": account, "action": action, "domain": domain,
            "record": {"type": type, "owner": owner, "department": department,
                       "shares": [share_json(share) for share in shares],
                       **({"attributes": dict(attributes)} if attributes is not None else {})},
            "missing_context": list(decision.missing_context),
            "reason": decision.reason,
            "role": decision.role,
            "scope": str(decision.scope) if decision.scope is not None else None,
            "rules": [list(r) for r in decision.rules],
            "steps": list(decision.steps),
        })
        return 0
    verdict = "ALLOW" if decision.allowed else "DENY"
    out.styled((verdict, "bold green" if decision.allowed else "bold red"), (": " + decision.reason, None))
    for step in decision.steps:
        out.text("  " + step)
    return 0


def share_json(share: Share) -> dict[str, str | None]:
    return {"level": share.level, "account": share.account, "department": share.department}


def share_text(share: Share) -> str:
    """``read_write:account=rep_w1`` (the ``--share`` form)."""
    if share.account is not None:
        return f"{share.level}:account={share.account}"
    return f"{share.level}:department={share.department}"


def holders(snapshot: Snapshot, action: str, type: str, now: float, *, owner: str | None = None,
            department: str | None = None, shares: tuple[Share, ...] = (),
            attributes: Mapping[str, Any] | None = None) -> list[str]:
    """Every account that may ``action`` on ``type`` — on some record, or on the given one (owned
    by ``owner``, in ``department``, carrying ``shares`` and ``attributes``; a record given by
    its shares or attributes alone has no owner and no department). On some record, an account
    holding the right only at ``shared`` counts: it may, on the records shared with it. On a
    given record, conditions (``where:``) are tested on its attributes and requirements
    (``requires:``) are taken as met: the account may, in a session that meets them (its scope
    shows them, ``all [mfa]``)."""
    key = (type, action)
    specific = owner is not None or department is not None or bool(shares) or attributes is not None
    found = []
    for name in sorted(snapshot.accounts):
        coverage = engine.effective(snapshot, name, now)[0].get(key)
        if coverage is None:
            continue
        if specific and not requirements_met(coverage).covers(owner, department, snapshot.homes,
                                                              shares, attributes):
            continue
        found.append(name)
    return found


def holders_if_shared(snapshot: Snapshot, action: str, type: str, now: float, *,
                      owner: str | None = None, department: str | None = None,
                      shares: tuple[Share, ...] = ()) -> dict[str, list[str]]:
    """The accounts that may not ``action`` the given record as it is, but would if it were
    shared with them (account → the share levels that would do): a record given without shares
    is not reached by ``shared`` rights, and saying nothing of them would read as "nobody else"."""
    key = (type, action)
    found: dict[str, list[str]] = {}
    for name in sorted(snapshot.accounts):
        coverage = engine.effective(snapshot, name, now)[0].get(key)
        if coverage is None or not coverage.guarded \
                or coverage.covers(owner, department, snapshot.homes, shares):
            continue
        levels = sorted({level for term in coverage.guarded
                         if term.base.covers(owner, department, snapshot.homes)
                         and all(isinstance(g, ShareGuard) for g in term.guards)
                         for level in frozenset.intersection(
                             *(g.levels for g in term.guards if isinstance(g, ShareGuard)))})
        if levels:
            found[name] = levels
    return found


def who_can_rows(index: Snapshot, action: str, type: str, now: float, *, owner: str | None = None,
                 department: str | None = None, shares: tuple[Share, ...] = (),
                 attributes: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in holders(index, action, type, now, owner=owner, department=department, shares=shares,
                        attributes=attributes):
        rows.append({"account": name, "scope": scope_label(index, name, (type, action), now),
                     "capped_by": _capped_by(index, name, (type, action), now)})
    return rows


def _capped_by(index: Snapshot, account: str, key: tuple[str, str], now: float) -> str | None:
    """The parent whose ceiling cuts what ``account`` holds for ``key`` (``None``: not cut)."""
    info = index.account(account)
    if info.parent is None:
        return None
    own = engine.own_map(index, account, now)[0].get(key)
    held = engine.effective(index, account, now)[0].get(key)
    if own is not None and excess(own, held, index):
        return info.parent
    return None


def _scope_key(scope: Scope) -> Scope:
    """Custom scopes are stored one department per rule: compared as one custom scope."""
    return Scope(ScopeKind.CUSTOM) if scope.kind is ScopeKind.CUSTOM else scope


def expiring_parts(index: Snapshot, account: str, key: Key, now: float) -> list[dict[str, Any]]:
    """The scopes of ``account``'s hold on ``key`` (its widest ones, as what-can shows them)
    that end by themselves: each with the moment (the latest of its sources) and what it comes
    through — a timed role assignment (``role senior_rep``) or a direct grant (``a grant``).
    A scope also held permanently is not listed."""
    held = live_sources(index, account, key, now)
    label = widest_scopes([_scope_key(h.permission.scope) for h in held], index)
    parts = []
    for scope in label:
        same = [h for h in held if _scope_key(h.permission.scope) == scope]
        if not same or any(h.permission.expires is None for h in same):
            continue
        last = max(same, key=lambda h: h.permission.expires or 0.0)
        through = f"role {last.via[0]}" if last.via else "a grant"
        shown = label_of(scope, held)
        parts.append({"scope": shown, "until": R.format_expiry_at(last.permission.expires or 0.0),
                      "through": through})
    return parts


def label_of(scope: Scope, held: list[engine.Holding]) -> str:
    if scope.kind is not ScopeKind.CUSTOM:
        return str(scope)
    return str(Scope(ScopeKind.CUSTOM, frozenset(
        d for h in held if h.permission.scope.kind is ScopeKind.CUSTOM
        for d in h.permission.scope.departments)))


def expiring_text(parts: list[dict[str, Any]], label: str) -> str:
    """`` until 2027-03-31T00:00:00Z (role senior_rep)`` when the whole label ends then, else
    `` (shared until … through role senior_rep)``."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["scope"] == label:
        return f" until {parts[0]['until']} ({parts[0]['through']})"
    return " (" + "; ".join(f"{p['scope']} until {p['until']} through {p['through']}"
                            for p in parts) + ")"


def timed_roles(index: Snapshot, account: str, now: float) -> list[dict[str, Any]]:
    """The account's timed role assignments: role, until (ISO-8601), whether it has expired."""
    return [{"role": role, "until": R.format_expiry_at(until), "expired": engine.expired(until, now)}
            for role, until in sorted(index.account(account).timed_roles)]


def timed_roles_text(rows: list[dict[str, Any]]) -> str:
    """``senior_rep until 2027-03-31T00:00:00Z, helper expired at 2020-01-01T00:00:00Z``."""
    return ", ".join(f"{r['role']} {'expired at' if r['expired'] else 'until'} {r['until']}" for r in rows)


def what_can_rows(index: Snapshot, account: str, now: float) -> list[dict[str, Any]]:
    """One row per permission the account holds: ``permission`` (``customer:read@team``, with
    `` capped by PARENT`` when its parent's ceiling cuts it — the form policy tests expect),
    ``expiring`` (the scopes that end by themselves, see :func:`expiring_parts`), ``until``
    (the earliest of those moments) and ``text`` (the permission with its expiry, for people)."""
    rows = []
    for key in sorted(engine.effective(index, account, now)[0]):
        label = scope_label(index, account, key, now)
        capped_by = _capped_by(index, account, key, now)
        # A scope the parent's ceiling cuts is not what the account really holds: say so.
        text = permission_text(key, label) + (f" capped by {capped_by}" if capped_by else "")
        parts = expiring_parts(index, account, key, now)
        rows.append({"permission": text, "type": key[0], "action": key[1], "scope": label,
                     "capped_by": capped_by, "expiring": parts,
                     "until": min((p["until"] for p in parts), default=None),
                     "text": text + expiring_text(parts, label)})
    return rows


def who_can(source: Source, action: str, type: str, *, owner: str | None, department: str | None,
            domain: str, out: Output, fmt: str, shares: tuple[Share, ...] = (),
            attributes: Mapping[str, Any] | None = None) -> int:
    index = source.snapshot(domain)
    require_names(index, action=action, type=type, owner=owner, department=department, shares=shares)
    now = source.now
    rows = who_can_rows(index, action, type, now, owner=owner, department=department, shares=shares,
                        attributes=attributes)
    specific = owner is not None or department is not None or bool(shares) or attributes is not None
    if_shared = holders_if_shared(index, action, type, now, owner=owner, department=department,
                                  shares=shares) if specific else {}
    target = f"{type}:{action}"
    if owner is not None:
        target += f" on a record owned by {owner}"
    elif department is not None:
        target += f" on a record in {department}"
    elif shares or attributes is not None:
        target += " on a record"
    if shares:
        target += " shared " + ", ".join(share_text(share) for share in shares)
    if attributes:
        target += " with " + ", ".join(f"{k}={v!r}" for k, v in sorted(attributes.items()))
    if fmt == "json":
        out.data({"domain": domain, "action": action, "type": type, "owner": owner,
                  "department": department, "shares": [share_json(s) for s in shares],
                  **({"attributes": dict(attributes)} if attributes is not None else {}),
                  "accounts": rows,
                  "if_shared": [{"account": name, "levels": levels} for name, levels in if_shared.items()]})
        return 0
    out.table(["account", "scope", "capped by parent"],
              [[r["account"], r["scope"], r["capped_by"] or ""] for r in rows],
              title=f"{count(len(rows), 'account')} may {target} in {domain}")
    if if_shared:
        # Rights at `shared` reach this record only through a share it does not carry: they are
        # neither "may" nor silently "may not".
        listed = [f"{name} ({'/'.join(levels)})" for name, levels in if_shared.items()]
        out.text(f"{count(len(if_shared), 'more account')} would, if the record were shared with "
                 f"them: {capped(listed, 10)}", style="dim")
    return 0


def what_can(source: Source, account: str, *, domain: str, out: Output, fmt: str) -> int:
    index = source.snapshot(domain)
    require_names(index, account=account)
    now = source.now
    info = index.account(account)
    rows = what_can_rows(index, account, now)
    timed = timed_roles(index, account, now)
    if fmt == "json":
        out.data({"domain": domain, "account": account, "status": info.status,
                  "parent": info.parent, "roles": sorted(info.roles), "timed_roles": timed,
                  "also_in": sorted(info.also_in), "reports_to": info.reports_to,
                  "permissions": rows})
        return 0
    if info.status != "active":
        out.text(f"{account} is {info.status}: it may do nothing")
        return 0
    if timed:
        out.text(f"timed roles: {timed_roles_text(timed)}", style="dim")
    out.table(["permission"], [[r["text"]] for r in rows],
              title=f"{account} may do {count(len(rows), 'thing')} in {domain}")
    return 0

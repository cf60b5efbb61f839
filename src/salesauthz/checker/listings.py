"""``salesauthz explain``, ``who-can`` and ``what-can``: questions about one domain's rules."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from salesauthz import _engine as engine
from salesauthz._engine import Snapshot
from salesauthz._wording import count, did_you_mean
from salesauthz.errors import UsageError
from salesauthz.models.loader import Progress
from salesauthz.values import Record

from .analysis import excess, permission_text, scope_label
from .output import Output

__all__ = ["Source", "holders", "open_source", "what_can_rows", "who_can_rows"]


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
                  type: str | None = None, owner: str | None = None, department: str | None = None) -> None:
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


def _unknown(what: str, name: str, qualifier: str, domain: str, known: Iterable[str]) -> str:
    close = did_you_mean(name, known)
    return f"unknown {what} {name!r}{qualifier} in domain {domain!r}" + (f": {close}" if close else "")


def open_source(path: str | None, url: str | None, *, progress: Progress | None = None) -> Source:
    """The rules at ``url`` (a store, opened read-only) or in the directory ``path`` (default
    ``policies``)."""
    from salesauthz.errors import PolicyError, StorageError
    from salesauthz.models.loader import load_directory

    if url is not None and path is not None:
        raise UsageError("give a policy directory or --url, not both")
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
            department: str | None, domain: str, out: Output, fmt: str) -> int:
    snapshot = source.snapshot(domain)  # an unknown domain is a usage error here, not a silent deny
    require_names(snapshot, account=account, action=action, type=type, owner=owner, department=department)
    record = Record(type, owner=owner, department=department)
    decision = engine.explain(snapshot, account, action, record, domain, source.now)
    if fmt == "json":
        out.data({
            "allowed": decision.allowed,
            "account": account, "action": action, "domain": domain,
            "record": {"type": type, "owner": owner, "department": department},
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


def holders(snapshot: Snapshot, action: str, type: str, now: float, *, owner: str | None = None,
            department: str | None = None) -> list[str]:
    """Every account that may ``action`` on ``type`` — on some record, or on the given one."""
    key = (type, action)
    specific = owner is not None or department is not None
    found = []
    for name in sorted(snapshot.accounts):
        coverage = engine.effective(snapshot, name, now)[0].get(key)
        if coverage is None:
            continue
        if specific and not coverage.covers(owner, department, snapshot.homes):
            continue
        found.append(name)
    return found


def who_can_rows(index: Snapshot, action: str, type: str, now: float, *, owner: str | None = None,
                 department: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in holders(index, action, type, now, owner=owner, department=department):
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


def what_can_rows(index: Snapshot, account: str, now: float) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(engine.effective(index, account, now)[0]):
        label = scope_label(index, account, key, now)
        capped_by = _capped_by(index, account, key, now)
        # A scope the parent's ceiling cuts is not what the account really holds: say so.
        text = permission_text(key, label) + (f" capped by {capped_by}" if capped_by else "")
        rows.append({"permission": text, "type": key[0], "action": key[1], "scope": label,
                     "capped_by": capped_by})
    return rows


def who_can(source: Source, action: str, type: str, *, owner: str | None, department: str | None,
            domain: str, out: Output, fmt: str) -> int:
    index = source.snapshot(domain)
    require_names(index, action=action, type=type, owner=owner, department=department)
    now = source.now
    rows = who_can_rows(index, action, type, now, owner=owner, department=department)
    target = f"{type}:{action}"
    if owner is not None:
        target += f" on a record owned by {owner}"
    elif department is not None:
        target += f" on a record in {department}"
    if fmt == "json":
        out.data({"domain": domain, "action": action, "type": type, "owner": owner,
                  "department": department, "accounts": rows})
        return 0
    out.table(["account", "scope", "capped by parent"],
              [[r["account"], r["scope"], r["capped_by"] or ""] for r in rows],
              title=f"{count(len(rows), 'account')} may {target} in {domain}")
    return 0


def what_can(source: Source, account: str, *, domain: str, out: Output, fmt: str) -> int:
    index = source.snapshot(domain)
    require_names(index, account=account)
    now = source.now
    info = index.account(account)
    rows = what_can_rows(index, account, now)
    if fmt == "json":
        out.data({"domain": domain, "account": account, "status": info.status,
                  "parent": info.parent, "permissions": rows})
        return 0
    if info.status != "active":
        out.text(f"{account} is {info.status}: it may do nothing")
        return 0
    out.table(["permission"], [[r["permission"]] for r in rows],
              title=f"{account} may do {count(len(rows), 'thing')} in {domain}")
    return 0

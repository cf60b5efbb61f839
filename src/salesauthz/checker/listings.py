"""``salesauthz explain``, ``who-can`` and ``what-can``: questions about one domain's rules."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from salesauthz import _engine as engine
from salesauthz._engine import Snapshot
from salesauthz._wording import count
from salesauthz.errors import UsageError
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
            raise UsageError(f"domain {domain!r} is not in {self.label} (domains: {known})")
        return found


def open_source(path: str | None, url: str | None) -> Source:
    """The rules at ``url`` (a store) or in the directory ``path`` (default ``policies``)."""
    from salesauthz.errors import PolicyError, StorageError
    from salesauthz.models.loader import load_directory

    if url is not None and path is not None:
        raise UsageError("give a policy directory or --url, not both")
    if url is not None:
        from salesauthz.adapters import mask_url, open_adapter

        try:
            store = open_adapter(url)
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
        rules = load_directory(directory).rules
    except PolicyError as exc:
        raise UsageError(f"cannot load {directory} (run `salesauthz check {directory}`): {exc}") from None
    return Source(directory, engine.compile_domains(rules))


def explain(source: Source, account: str, action: str, type: str, *, owner: str | None,
            department: str | None, domain: str, out: Output, fmt: str) -> int:
    snapshot = source.snapshot(domain)  # an unknown domain is a usage error here, not a silent deny
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
    now = source.now
    info = index.account(account)
    rows = what_can_rows(index, account, now)
    if fmt == "json":
        out.data({"domain": domain, "account": account, "status": info.status,
                  "parent": info.parent, "permissions": rows})
        return 0
    if info.status is None:
        out.text(f"{account} is not an account of {domain}: it may do nothing")
        return 0
    if info.status != "active":
        out.text(f"{account} is {info.status}: it may do nothing")
        return 0
    out.table(["permission"], [[r["permission"]] for r in rows],
              title=f"{account} may do {count(len(rows), 'thing')} in {domain}")
    return 0

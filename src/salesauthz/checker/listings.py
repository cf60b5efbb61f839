"""``salesauthz explain``, ``who-can`` and ``what-can``: questions about one domain's rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from salesauthz._index import DomainIndex
from salesauthz.authorizer import Authorizer, Record

from .analysis import excess, permission_text, raw_map, scope_label
from .output import Output

__all__ = ["Source", "holders", "open_source", "what_can_rows", "who_can_rows"]


@dataclass(slots=True)
class Source:
    """An authorizer over a policy directory or a store, and what to call it in messages."""

    authorizer: Authorizer
    label: str

    def index(self, domain: str) -> DomainIndex:
        from .cli import UsageError

        index = self.authorizer.index(domain)
        if index is None:
            known = ", ".join(self.authorizer.domains()) or "none"
            raise UsageError(f"domain {domain!r} is not in {self.label} (domains: {known})")
        return index


def open_source(path: str | None, url: str | None) -> Source:
    """The rules at ``url`` (a store) or in the directory ``path`` (default ``policies``)."""
    from salesauthz.errors import PolicyError, StorageError

    from .cli import UsageError

    if url is not None and path is not None:
        raise UsageError("give a policy directory or --url, not both")
    if url is not None:
        from salesauthz.adapters import mask_url

        try:
            return Source(Authorizer.from_url(url), mask_url(url))
        except (StorageError, PolicyError) as exc:
            raise UsageError(f"cannot open {mask_url(url)}: {exc}") from None
    directory = path or "policies"
    try:
        return Source(Authorizer.from_directory(directory), directory)
    except PolicyError as exc:
        raise UsageError(f"cannot load {directory} (run `salesauthz check {directory}`): {exc}") from None


def explain(source: Source, account: str, action: str, type: str, *, owner: str | None,
            department: str | None, domain: str, out: Output, fmt: str) -> int:
    source.index(domain)  # an unknown domain is a usage error here, not a silent deny
    record = Record(type, owner=owner, department=department)
    decision = source.authorizer.explain(account, action, record, domain=domain)
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


def holders(index: DomainIndex, action: str, type: str, now: float, *, owner: str | None = None,
            department: str | None = None) -> list[str]:
    """Every account that may ``action`` on ``type`` — on some record, or on the given one."""
    key = (type, action)
    specific = owner is not None or department is not None
    where = department or index.department_of(owner)
    found = []
    for name in sorted(index.accounts):
        coverage = index.effective(name, now)[0].get(key)
        if coverage is None:
            continue
        if specific and not coverage.covers(owner, where):
            continue
        found.append(name)
    return found


def who_can_rows(index: DomainIndex, action: str, type: str, now: float, *, owner: str | None = None,
                 department: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in holders(index, action, type, now, owner=owner, department=department):
        rows.append({"account": name, "scope": scope_label(index, name, (type, action), now),
                     "capped_by": _capped_by(index, name, (type, action), now)})
    return rows


def _capped_by(index: DomainIndex, account: str, key: tuple[str, str], now: float) -> str | None:
    """The parent whose ceiling cuts what ``account`` holds for ``key`` (``None``: not cut)."""
    info = index.account(account)
    if info.parent is None:
        return None
    own = raw_map(index, account, now).get(key)
    held = index.effective(account, now)[0].get(key)
    if own is not None and excess(own, held, index):
        return info.parent
    return None


def what_can_rows(index: DomainIndex, account: str, now: float) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(index.effective(account, now)[0]):
        label = scope_label(index, account, key, now)
        capped_by = _capped_by(index, account, key, now)
        # A scope the parent's ceiling cuts is not what the account really holds: say so.
        text = permission_text(key, label) + (f" capped by {capped_by}" if capped_by else "")
        rows.append({"permission": text, "type": key[0], "action": key[1], "scope": label,
                     "capped_by": capped_by})
    return rows


def who_can(source: Source, action: str, type: str, *, owner: str | None, department: str | None,
            domain: str, out: Output, fmt: str) -> int:
    index = source.index(domain)
    now = source.authorizer.now()
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
              title=f"{len(rows)} account(s) may {target} in {domain}")
    return 0


def what_can(source: Source, account: str, *, domain: str, out: Output, fmt: str) -> int:
    index = source.index(domain)
    now = source.authorizer.now()
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
              title=f"{account} may do {len(rows)} thing(s) in {domain}")
    return 0

"""``salesauthz diff OLD NEW``: who gains or loses which *effective* access between two versions.

Rule text is not compared: both versions are compiled and, for every account of every domain,
the effective permission maps (roles closed over inheritance, scopes resolved against the
department tree, parent ceilings applied, inactive accounts empty) are compared over the
natural records of the domain (see :mod:`salesauthz.checker.analysis`). A new rule that only
repeats what an account could already do is therefore no change at all.

Field rules are compared the same way, by asking the engine for field modes: who gains or loses
sight (``hidden`` ↔ ``readonly``/``visible``) or the right to change (``readonly`` ↔ ``visible``)
of which field, on which of the records it could read in both versions.

``OLD``/``NEW`` are directories, ``git:REV`` (the same directory as the other side, at that
revision of its repository), ``git:REV:PATH``, or a store URL (``sqlite:///…``,
``postgresql://…``, ``casbin+…``: opened read-only). Comparing a store with a directory compares
the domains the directory defines (what ``import`` would change), unless ``--domain`` says.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import EffectiveMap, Snapshot
from salesauthz._wording import capped, count
from salesauthz.errors import PolicyError, StorageError, UsageError
from salesauthz.models.loader import load_directory
from salesauthz.scopes import Coverage
from salesauthz.values import Share

from .analysis import excess, permission_text, scope_label
from .fields_view import field_types, natural_records, record_owners, shared_levels, where
from .output import Output
from .readonly import is_store

__all__ = [
    "AccountChange",
    "Change",
    "DiffResult",
    "FactChange",
    "FieldChange",
    "diff_directories",
    "diff_snapshots",
    "diff_sources",
    "render_diff",
]

Kind = Literal["gain", "loss"]


@dataclass(frozen=True, slots=True)
class Change:
    domain: str
    account: str
    kind: Kind
    permission: str  # type:action@scope after the change (gain) or before it (loss)
    before: str | None  # the scope label before (None: not held at all)
    after: str | None
    records: str  # which natural records are gained or lost

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "account": self.account, "kind": self.kind,
                "permission": self.permission, "before": self.before, "after": self.after,
                "records": self.records}


@dataclass(frozen=True, slots=True)
class FieldChange:
    """An account gains or loses sight of a field (``hidden`` ↔ ``readonly``/``visible``), or the
    right to change it (``readonly`` ↔ ``visible``), on records it may read in both versions."""

    domain: str
    account: str
    kind: Kind
    type: str
    field: str
    before: str  # the field mode before: visible, readonly or hidden
    after: str
    records: str

    @property
    def what(self) -> str:
        """``gains sight of``, ``loses the right to change`` …"""
        sight = "hidden" in (self.before, self.after)
        verb = "gains" if self.kind == "gain" else "loses"
        return f"{verb} {'sight of' if sight else 'the right to change'}"

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "account": self.account, "kind": self.kind, "type": self.type,
                "field": self.field, "before": self.before, "after": self.after, "records": self.records}


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account that gains or loses everything at once (it appears or disappears, is
    reactivated or frozen): one line instead of one per permission."""

    domain: str
    account: str
    kind: Kind
    reason: str  # "new account", "removed", "now frozen", "active again" …
    permissions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "account": self.account, "kind": self.kind, "reason": self.reason,
                "permissions": list(self.permissions)}


FactKind = Literal["gain", "loss", "change"]


@dataclass(frozen=True, slots=True)
class FactChange:
    """A change of a record-model fact of an account present in both versions, or of a share
    level: its auxiliary departments, reporting superior, timed role assignments, or what a share
    level allows. What these facts change in effective access *now* is listed with the
    permissions; a timed role whose assignment lasts longer (or is made permanent) is a ``gain``
    and one that ends sooner a ``loss`` — access that changes later, not now —, and the other
    facts are a ``change``."""

    domain: str
    subject: str  # an account, or a type's share level: customer.read_write
    kind: FactKind
    text: str  # "also in service", "reports to dir_1 (was lead_e1)" …

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "subject": self.subject, "kind": self.kind, "text": self.text}


@dataclass(slots=True)
class DiffResult:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)
    fields: list[FieldChange] = field(default_factory=list)
    accounts: list[AccountChange] = field(default_factory=list)
    facts: list[FactChange] = field(default_factory=list)

    @property
    def gains(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "gain"]

    @property
    def losses(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "loss"]

    @property
    def gained(self) -> bool:
        """Whether anyone gains anything: a permission, or sight of (or the right to change) a field."""
        return (bool(self.gains) or any(c.kind == "gain" for c in self.fields)
                or any(c.kind == "gain" for c in self.facts))

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.fields or self.facts)


_READ = "read"


def diff_snapshots(old: dict[str, Snapshot], new: dict[str, Snapshot], now: float,
                   domains: Collection[str] | None = None) -> DiffResult:
    """The changes between two compiled versions (of ``domains``, or all)."""
    result = DiffResult("old", "new")
    for domain in sorted(set(old) | set(new)):
        if domains is not None and domain not in domains:
            continue
        before_index, after_index = old.get(domain), new.get(domain)
        accounts = set(before_index.accounts if before_index else ()) | set(
            after_index.accounts if after_index else ())
        maps: dict[str, tuple[EffectiveMap, EffectiveMap]] = {}
        for account in sorted(accounts):
            before = engine.effective(before_index, account, now)[0] if before_index else {}
            after = engine.effective(after_index, account, now)[0] if after_index else {}
            maps[account] = (before, after)
            found = _permission_changes(domain, account, before_index, after_index, before, after, now)
            result.changes.extend(found)
            whole = _whole_account(domain, account, before_index, after_index, before, after, found)
            if whole is not None:
                result.accounts.append(whole)
        result.fields.extend(_field_changes(domain, before_index, after_index, maps, now))
        result.facts.extend(fact_changes(domain, before_index, after_index, now))
    return result


def _permission_changes(domain: str, account: str, before_index: Snapshot | None,
                        after_index: Snapshot | None, before: EffectiveMap, after: EffectiveMap,
                        now: float) -> list[Change]:
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        was, now_held = before.get(key), after.get(key)
        was_label = scope_label(before_index, account, key, now) if was and before_index else None
        new_label = scope_label(after_index, account, key, now) if now_held and after_index else None
        if now_held is not None and after_index is not None:
            gained = excess(now_held, was, after_index)
            if gained:
                changes.append(Change(domain, account, "gain", permission_text(key, new_label or "?"),
                                      was_label, new_label, gained.describe()))
        if was is not None and before_index is not None:
            lost = excess(was, now_held, before_index)
            if lost:
                changes.append(Change(domain, account, "loss", permission_text(key, was_label or "?"),
                                      was_label, new_label, lost.describe()))
    return changes


def _status(index: Snapshot | None, account: str) -> str | None:
    return index.account(account).status if index is not None and account in index.accounts else None


def _whole_account(domain: str, account: str, before_index: Snapshot | None, after_index: Snapshot | None,
                   before: EffectiveMap, after: EffectiveMap, found: list[Change]) -> AccountChange | None:
    """The one-line summary of an account that holds nothing on one side and something on the other."""
    if not found or (before and after):
        return None
    was, now = _status(before_index, account), _status(after_index, account)
    if after:  # it held nothing before
        reason = "new account" if was is None else ("active again" if was != now else "first rights")
        return AccountChange(domain, account, "gain", reason, tuple(c.permission for c in found))
    reason = "removed" if now is None else f"now {now}" if now != "active" else "no rights left"
    return AccountChange(domain, account, "loss", reason, tuple(c.permission for c in found))


# -- record-model facts -----------------------------------------------------------------------


def fact_changes(domain: str, before: Snapshot | None, after: Snapshot | None,
                 now: float) -> list[FactChange]:
    """Changes of share levels, and of the auxiliary departments, reporting superior and timed
    role assignments of the accounts registered in both versions."""
    if before is None or after is None:
        return []
    found: list[FactChange] = []
    for type in sorted(set(before.sharing) | set(after.sharing)):
        old_levels, new_levels = before.sharing.get(type, {}), after.sharing.get(type, {})
        for level in sorted(set(old_levels) | set(new_levels)):
            was, now_allows = old_levels.get(level), new_levels.get(level)
            subject = f"{type}.{level}"
            if was is None and now_allows is not None:
                text = f"new share level {subject}: {', '.join(sorted(now_allows))}"
            elif now_allows is None and was is not None:
                text = f"share level {subject} removed (it allowed {', '.join(sorted(was))})"
            elif was != now_allows and was is not None and now_allows is not None:
                text = f"share level {subject} " + _plus_minus(was, now_allows)
            else:
                continue
            found.append(FactChange(domain, subject, "change", text))
    for account in sorted(set(before.accounts) & set(after.accounts)):
        old, new = before.account(account), after.account(account)
        if old.status is None or new.status is None:
            continue
        if old.also_in != new.also_in:
            found.append(FactChange(domain, account, "change",
                                    "auxiliary departments " + _plus_minus(old.also_in, new.also_in)))
        if old.reports_to != new.reports_to:
            if new.reports_to is None:
                text = f"no longer reports to {old.reports_to}"
            else:
                text = f"reports to {new.reports_to}" + (f" (was {old.reports_to})" if old.reports_to else "")
            found.append(FactChange(domain, account, "change", text))
        found.extend(_timed_role_changes(domain, account, before, after, now))
    return found


def _plus_minus(old: Collection[str], new: Collection[str]) -> str:
    """``+ delete, - update``."""
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    return ", ".join([*(f"+ {a}" for a in added), *(f"- {r}" for r in removed)])


def _timed_role_changes(domain: str, account: str, before: Snapshot, after: Snapshot,
                        now: float) -> list[FactChange]:
    old, new = before.account(account), after.account(account)
    old_timed, new_timed = dict(old.timed_roles), dict(new.timed_roles)
    found = []
    for role in sorted(set(old_timed) | set(new_timed)):
        was, until = old_timed.get(role), new_timed.get(role)
        if was == until:
            continue
        at = R.format_expiry_at
        kind: FactKind
        if until is None:
            if role in new.roles:
                kind, text = "gain", f"role {role} now permanent (was until {at(was or 0.0)})"
            else:
                kind = "loss" if was is not None and was > now else "change"
                text = f"role {role} until {at(was or 0.0)} removed"
        elif was is None:
            if role in old.roles:
                kind, text = "loss", f"role {role} now until {at(until)} (was permanent)"
            else:
                kind = "gain" if until > now else "change"
                text = f"role {role} assigned until {at(until)}"
        else:
            later = until > was
            kind = ("gain" if until > now else "change") if later else ("loss" if was > now else "change")
            text = f"role {role} until {at(until)} (was until {at(was)})"
        found.append(FactChange(domain, account, kind, text))
    return found


# -- field rules ------------------------------------------------------------------------------


def _field_inputs(index: Snapshot, account: str, type: str) -> tuple[object, ...]:
    """Everything the engine's field modes of ``account`` depend on (its parent chain's statuses,
    departments and roles, and the field rules of those roles); equal inputs, equal modes."""
    names = engine.chain(index, account) or (account,)
    inputs: list[object] = [tuple(sorted(index.sharing.get(type, {}).items())),
                            index.reports_below(account, transitive=True)]
    for name in names:
        info = index.account(name)
        assigned = [*info.roles, *(role for role, _ in info.timed_roles)]
        reached = sorted({role for role_name in assigned for role, _ in index.role_paths.get(role_name, ())})
        rules = sorted(rule.rule for role in reached for rule in index.role_fields.get(role, ())
                       if rule.type == type)
        inputs.append((name, info.status, info.department, tuple(sorted(info.roles)), tuple(rules),
                       tuple(sorted(info.also_in)), info.timed_roles))
    return tuple(inputs)


def _field_changes(domain: str, before_index: Snapshot | None, after_index: Snapshot | None,
                   maps: dict[str, tuple[EffectiveMap, EffectiveMap]], moment: float) -> list[FieldChange]:
    """Field-mode changes, on the natural records each account may read in both versions (a
    record newly readable, or no longer, is a permission change already)."""
    if before_index is None or after_index is None:
        return []
    types = field_types(before_index) | field_types(after_index)
    if not types:
        return []
    same_tree = dict(before_index.department_parent) == dict(after_index.department_parent)
    departments = sorted(set(before_index.department_parent) | set(after_index.department_parent))
    changes: list[FieldChange] = []
    for type in sorted(types):
        fields = sorted(engine.ruled_fields(before_index, type) | engine.ruled_fields(after_index, type))
        for account, (before, after) in sorted(maps.items()):
            was, now = before.get((type, _READ)), after.get((type, _READ))
            if was is None or now is None:
                continue  # it reads no record of the type on one side: a permission change
            if (same_tree and was == now and account in before_index.accounts
                    and account in after_index.accounts
                    and _field_inputs(before_index, account, type)
                    == _field_inputs(after_index, account, type)):
                continue
            changes.extend(_account_field_changes(domain, account, type, fields, departments,
                                                  (before_index, was), (after_index, now), moment))
    return changes


_RANK = {"hidden": 0, "readonly": 1, "visible": 2}


def _account_field_changes(domain: str, account: str, type: str, fields: list[str],
                           departments: list[str], old: tuple[Snapshot, Coverage],
                           new: tuple[Snapshot, Coverage], moment: float) -> list[FieldChange]:
    (before_index, was_read), (after_index, now_read) = old, new
    owners = dict.fromkeys([*record_owners(before_index, account), *record_owners(after_index, account)])
    records = natural_records(owners, departments, {o: after_index.department_of(o) for o in owners})
    found: dict[tuple[str, str, str], tuple[set[str], dict[str, str | None], set[str]]] = {}
    for owner, department in records:
        if not (was_read.covers(owner, department, before_index.homes)
                and now_read.covers(owner, department, after_index.homes)):
            continue
        before = engine.field_modes(before_index, account, type, owner, department, fields, now=moment)
        after = engine.field_modes(after_index, account, type, owner, department, fields, now=moment)
        for name in fields:
            if before[name] != after[name]:
                places = found.setdefault((name, before[name], after[name]), (set(), {}, set()))
                if owner is None:
                    if department is not None:
                        places[0].add(department)
                else:
                    places[1][owner] = department
    # Records shared with the account (no natural record stands for them), at the levels it
    # reads them at in both versions.
    levels = set(shared_levels(before_index, account, type, was_read)) & set(
        shared_levels(after_index, account, type, now_read))
    for level in sorted(levels):
        shares = (Share(level, account=account),)
        before = engine.field_modes(before_index, account, type, None, None, fields, now=moment,
                                    shares=shares)
        after = engine.field_modes(after_index, account, type, None, None, fields, now=moment,
                                   shares=shares)
        for name in fields:
            if before[name] != after[name]:
                found.setdefault((name, before[name], after[name]), (set(), {}, set()))[2].add(level)
    changes = []
    for (name, was, now), (in_departments, owned, shared) in sorted(found.items()):
        kind: Kind = "gain" if _RANK[now] > _RANK[was] else "loss"
        records_text = where(in_departments, owned, shared)
        if len(in_departments) == len(departments) and departments:
            records_text = "records in every department"
        changes.append(FieldChange(domain, account, kind, type, name, was, now, records_text))
    return changes


# -- sources ----------------------------------------------------------------------------------


def diff_directories(old: Path, new: Path, *, now: float | None = None, old_label: str | None = None,
                     new_label: str | None = None, domains: Collection[str] | None = None) -> DiffResult:
    moment = time.time() if now is None else now
    indexes = [_load(path) for path in (old, new)]
    result = diff_snapshots(indexes[0], indexes[1], moment, domains)
    result.old, result.new = old_label or str(old), new_label or str(new)
    return result


def _load(path: Path) -> dict[str, Snapshot]:
    try:
        return engine.compile_domains(load_directory(path).rules)
    except PolicyError as exc:
        raise UsageError(f"cannot load {path} (run `salesauthz check`): {exc}") from None


def _store_snapshots(url: str) -> dict[str, Snapshot]:
    from salesauthz.adapters import mask_url

    from .readonly import open_read_only

    try:
        store = open_read_only(url)
        try:
            states = engine.load_domains(store.load(), None, source=store.url)
        finally:
            store.close()
    except (StorageError, PolicyError) as exc:
        raise UsageError(f"cannot read {mask_url(url)}: {exc}") from None
    return {name: state.snapshot for name, state in states.items()
            if state.snapshot is not None and state.rules}


def diff_sources(old: str, new: str, *, now: float | None = None,
                 domains: Iterable[str] | None = None) -> DiffResult:
    """Diff two specs (directories, ``git:REV[:PATH]`` or store URLs) over ``domains`` (default:
    every domain; when one side is a store and the other is not, the other side's domains)."""
    from salesauthz.adapters import mask_url

    moment = time.time() if now is None else now
    wanted = list(domains) if domains is not None else None
    with tempfile.TemporaryDirectory(prefix="salesauthz-diff-") as scratch:
        sides = []
        for spec, other, name in ((old, new, "old"), (new, old, "new")):
            if is_store(spec):
                sides.append(_store_snapshots(spec))
            else:
                sides.append(_load(_materialise(spec, other, Path(scratch) / name)))
    stores = [is_store(old), is_store(new)]
    if wanted is None and stores[0] != stores[1]:
        # A store against a directory: what importing the directory would change.
        wanted = sorted(sides[1] if stores[0] else sides[0])
    result = diff_snapshots(sides[0], sides[1], moment, wanted)
    result.old = mask_url(old) if stores[0] else old
    result.new = mask_url(new) if stores[1] else new
    return result


def _materialise(spec: str, other: str, scratch: Path) -> Path:
    if not spec.startswith("git:"):
        path = Path(spec)
        if not path.exists():
            raise UsageError(f"{spec} does not exist (a policy directory, git:REV[:PATH] or a store URL)")
        if not path.is_dir():
            raise UsageError(f"{spec} is not a directory (a policy directory, git:REV[:PATH] or a store URL)")
        return path
    revision, _, inner = spec[len("git:"):].partition(":")
    if not revision:
        raise UsageError(f"{spec!r}: name a revision, e.g. git:HEAD or git:main:policies")
    if not inner:
        inner = other if not other.startswith("git:") and not is_store(other) else "policies"
    target = Path(inner).resolve()
    top = _git(Path.cwd(), "rev-parse", "--show-toplevel").strip()  # "the working repo"
    try:
        relative = target.relative_to(Path(top).resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{inner} is not inside the git repository at {top}") from None
    listing = _git(Path(top), "ls-tree", "-r", "--name-only", revision, "--", relative or ".")
    files = [name for name in listing.splitlines() if name.endswith((".yaml", ".yml", ".conf"))]
    if not files:
        raise UsageError(f"no policy files under {relative or '.'} at revision {revision}")
    for name in files:
        content = _git(Path(top), "show", f"{revision}:{name}")
        destination = scratch / Path(name).relative_to(relative) if relative else scratch / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(content, encoding="utf-8")
    return scratch


def _git(where: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


# -- output -----------------------------------------------------------------------------------


_LISTED = 3  # permissions named in an account's one-line summary


def render_diff(result: DiffResult, out: Output, *, fmt: str = "text") -> None:
    if fmt == "json":
        out.data({"old": result.old, "new": result.new, "gains": len(result.gains),
                  "losses": len(result.losses),
                  "field_gains": sum(1 for c in result.fields if c.kind == "gain"),
                  "field_losses": sum(1 for c in result.fields if c.kind == "loss"),
                  "changes": [c.to_json() for c in result.changes],
                  "fields": [c.to_json() for c in result.fields],
                  "accounts": [c.to_json() for c in result.accounts],
                  "facts": [c.to_json() for c in result.facts]})
        return
    if not result.changed:
        out.text(f"no change in effective access between {result.old} and {result.new}", style="green")
        return
    summarised = {(c.domain, c.account) for c in result.accounts}
    for whole in result.accounts:
        sign, style = ("+", "green") if whole.kind == "gain" else ("-", "red")
        verb = "gains" if whole.kind == "gain" else "loses all"
        out.styled((f"{sign} ", style), (f"{whole.domain}  {whole.account}  ", "bold"),
                   (f"{verb} {count(len(whole.permissions), 'permission')} ({whole.reason})", style),
                   (f"  [{capped(whole.permissions, _LISTED)}]", "dim"))
    for change in result.changes:
        if (change.domain, change.account) in summarised:
            continue
        sign, style = ("+", "green") if change.kind == "gain" else ("-", "red")
        was = f" (was {change.before})" if change.kind == "gain" and change.before else ""
        now = f" (now {change.after})" if change.kind == "loss" and change.after else ""
        out.styled((f"{sign} ", style), (f"{change.domain}  {change.account}  ", "bold"),
                   (f"{'gains' if change.kind == 'gain' else 'loses'} {change.permission}{was}{now}", style),
                   (f"  [{change.records}]", "dim"))
    for seen in result.fields:
        sign, style = ("+", "green") if seen.kind == "gain" else ("-", "red")
        out.styled((f"{sign} ", style), (f"{seen.domain}  {seen.account}  ", "bold"),
                   (f"{seen.what} {seen.type}.{seen.field} ({seen.before} → {seen.after})", style),
                   (f"  [{seen.records}]", "dim"))
    for fact in result.facts:
        sign, style = {"gain": ("+", "green"), "loss": ("-", "red"), "change": ("~", "yellow")}[fact.kind]
        out.styled((f"{sign} ", style), (f"{fact.domain}  {fact.subject}  ", "bold"), (fact.text, style))
    field_gains = sum(1 for c in result.fields if c.kind == "gain")
    field_losses = len(result.fields) - field_gains
    fields = (f"; fields: {count(field_gains, 'gain')}, {count(field_losses, 'loss')}"
              if result.fields else "")
    if result.facts:
        fields += f"; {count(len(result.facts), 'fact')} changed"
    out.text(f"{count(len(result.gains), 'gain')}, {count(len(result.losses), 'loss')}{fields} between "
             f"{result.old} and {result.new}")

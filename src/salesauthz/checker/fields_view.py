"""What an account sees of each field some role rules, as the engine decides it (its field
modes are asked for, never recomputed here): for ``review`` (one version) and ``diff`` (two)."""

from __future__ import annotations

from collections.abc import Iterable

from salesauthz import _engine as engine
from salesauthz._engine import Snapshot
from salesauthz.scopes import Coverage
from salesauthz.values import Share

from .analysis import Excess

__all__ = ["field_types", "field_visibility", "natural_records", "record_owners", "shared_levels"]

Records = list[tuple[str | None, str | None]]  # (owner, department)


def field_types(index: Snapshot | None) -> set[str]:
    """The resource types some role has field rules for."""
    if index is None:
        return set()
    return {rule.type for rules in index.role_fields.values() for rule in rules}


def natural_records(owners: Iterable[str], departments: Iterable[str],
                    home: dict[str, str | None]) -> Records:
    """The records field rules are compared on: each department's (no particular owner), and
    those of the given owners — the account and its parent chain, whose ``own`` rules differ —
    in their departments."""
    return [(None, d) for d in departments] + [(owner, home.get(owner)) for owner in owners]


def record_owners(index: Snapshot, account: str) -> tuple[str, ...]:
    """The owners whose records field rules are compared on: the account's parent chain (whose
    ``own`` rules differ) and everyone below it in the reporting line (``subordinates``)."""
    chain = engine.chain(index, account) or (account,)
    below = sorted(index.reports_below(account, transitive=True) - set(chain))
    return (*chain, *below)


def shared_levels(index: Snapshot, account: str, type: str, read: Coverage) -> list[str]:
    """The share levels of ``type`` at which a record shared with ``account`` alone (no owner,
    department or other reach of its own) is readable: field rules are compared on those records
    too (``records shared read_only with it``), as no natural record stands for them."""
    if not read.guarded:
        return []
    return [level for level in sorted(index.sharing.get(type, {}))
            if read.covers(None, None, index.homes, (Share(level, account=account),))]


def where(departments: set[str], owned: dict[str, str | None], shared: Iterable[str] = ()) -> str:
    """``records in east-1; records owned by rep_e1a; records shared read_only with it`` — an
    owner's record in a department already named being one of that department's records."""
    owners = {owner for owner, department in owned.items() if department not in departments}
    text = Excess(frozenset(departments), frozenset(owners)).describe()
    levels = sorted(shared)
    if levels:
        text += ("; " if text else "") + f"records shared {'/'.join(levels)} with it"
    return text


def field_visibility(index: Snapshot, account: str, now: float) -> list[str]:
    """For each type with field rules that the account may read: each field it does not see
    (or change) on every record it reads — ``customer.phone: hidden on records in east-1,
    visible on records owned by lead_e1`` — then ``customer: other fields visible``."""
    effective = engine.effective(index, account, now)[0]
    owners = record_owners(index, account)
    found = []
    for type in sorted(field_types(index)):
        read: Coverage | None = effective.get((type, "read"))
        if read is None:
            continue
        fields = sorted(engine.ruled_fields(index, type))
        modes: dict[str, dict[str, tuple[set[str], dict[str, str | None], set[str]]]] = {}
        records = natural_records(owners, sorted(index.department_parent), dict(index.homes))
        for owner, department in records:
            if not read.covers(owner, department, index.homes):
                continue
            for name, mode in engine.field_modes(index, account, type, owner, department, fields,
                                                 now=now).items():
                places = modes.setdefault(name, {}).setdefault(mode, (set(), {}, set()))
                if owner is None and department is not None:
                    places[0].add(department)
                elif owner is not None:
                    places[1][owner] = department
        for level in shared_levels(index, account, type, read):
            shares = (Share(level, account=account),)
            for name, mode in engine.field_modes(index, account, type, None, None, fields, now=now,
                                                 shares=shares).items():
                modes.setdefault(name, {}).setdefault(mode, (set(), {}, set()))[2].add(level)
        # What is restricted, field by field; what is visible wherever it reads, in one phrase.
        restricted = {name: by_mode for name, by_mode in modes.items() if set(by_mode) != {"visible"}}
        for name, by_mode in sorted(restricted.items()):
            if len(by_mode) == 1:
                found.append(f"{type}.{name}: {next(iter(by_mode))}")
                continue
            parts = [f"{mode} on {where(*places)}" for mode, places in sorted(by_mode.items())]
            found.append(f"{type}.{name}: " + ", ".join(parts))
        if len(restricted) < len(modes):
            found.append(f"{type}: {'other fields' if restricted else 'every field'} visible")
    return found

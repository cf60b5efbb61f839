"""Field-level access: which fields of a record an account may see and change.

Roles carry field rules per resource type: ``visible`` (read and write), ``readonly`` or
``hidden``, optionally *record-conditional* (one mode on records within a scope, another
elsewhere — e.g. a customer's phone visible only on one's own customers). For one account and one
record: each of the account's roles (after inheritance) votes the most permissive of its rules
that apply to the record, and the most permissive vote wins (grants add up); a field no role
mentions is ``visible``; a sub-account's mode is capped by its parent's (the stricter of the
two); an account that is not active sees every ruled field as ``hidden``.

Field rules refine what a record-level permission allows; they never replace it: check ``read`` /
``update`` on the record first (:meth:`FieldAccess.check_write` does both). The rules themselves
are the engine's (:mod:`salesauthz._engine`); this module is the part of the
:class:`~salesauthz.Authorizer` API that asks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from . import _engine as engine
from .errors import ForbiddenError
from .values import Record, Share

if TYPE_CHECKING:
    from ._engine import Snapshot

__all__ = ["FieldAccess"]


class _Decides(Protocol):
    def check(self, account: str, action: str, record: Record, *, domain: str) -> bool: ...

    def _snapshot(self, domain: str) -> Snapshot | None: ...

    def _clock(self) -> float: ...

    def field_modes(self, account: str, type: str, record: Mapping[str, Any], *, domain: str,
                    fields: Iterable[str] | None = None, owner_field: str = "owner",
                    department_field: str = "department") -> dict[str, str]: ...


class FieldAccess:
    """The field-level methods of :class:`~salesauthz.Authorizer` (see the module documentation)."""

    def field_modes(self: _Decides, account: str, type: str, record: Mapping[str, Any], *, domain: str,
                    fields: Iterable[str] | None = None, owner_field: str = "owner",
                    department_field: str = "department") -> dict[str, str]:
        """``field → "visible" | "readonly" | "hidden"`` for a record given as a mapping (its
        owner and department are read from ``owner_field``/``department_field``, its shares from
        ``"shares"``: :class:`~salesauthz.Share` values or mappings with the same keys)."""
        snapshot = self._snapshot(domain)
        names = set(record if fields is None else fields)
        if snapshot is None:
            return dict.fromkeys(sorted(names), "hidden")
        if fields is None:
            names |= engine.ruled_fields(snapshot, type)
        return engine.field_modes(snapshot, account, type, _text(record.get(owner_field)),
                                  _text(record.get(department_field)), sorted(names),
                                  now=self._clock(), shares=_shares(record))

    def redact(self: _Decides, account: str, type: str, record: Mapping[str, Any], *, domain: str,
               owner_field: str = "owner", department_field: str = "department") -> dict[str, Any]:
        """A copy of ``record`` without the fields hidden from ``account``. (Whether the account
        may read the record at all is :meth:`check`'s question: ask it first.)"""
        modes = self.field_modes(account, type, record, domain=domain, fields=record,
                                 owner_field=owner_field, department_field=department_field)
        return {k: v for k, v in record.items() if modes.get(k) != "hidden"}

    def writable_fields(self: _Decides, account: str, type: str, record: Mapping[str, Any], *, domain: str,
                        fields: Iterable[str] | None = None, owner_field: str = "owner",
                        department_field: str = "department") -> frozenset[str]:
        """The fields (of ``fields``, or of the record and every ruled field) the account may
        change on this record: neither readonly nor hidden, and only if it may ``update`` it."""
        target = _target(type, record, owner_field, department_field)
        if not self.check(account, "update", target, domain=domain):
            return frozenset()
        modes = self.field_modes(account, type, record, domain=domain, fields=fields,
                                 owner_field=owner_field, department_field=department_field)
        return frozenset(f for f, mode in modes.items() if mode == "visible")

    def check_write(self: _Decides, account: str, type: str, record: Mapping[str, Any],
                    changes: Mapping[str, Any], *, domain: str, owner_field: str = "owner",
                    department_field: str = "department") -> None:
        """Raise :class:`~salesauthz.errors.ForbiddenError` unless ``account`` may ``update``
        the record and every changed field is writable for it; the message names the fields."""
        target = _target(type, record, owner_field, department_field)
        if not self.check(account, "update", target, domain=domain):
            raise ForbiddenError(f"{account} may not update this {type} record", account=account,
                                 action="update", type=type, domain=domain)
        modes = self.field_modes(account, type, record, domain=domain, fields=changes,
                                 owner_field=owner_field, department_field=department_field)
        refused = sorted(f for f, mode in modes.items() if mode != "visible")
        if refused:
            detail = ", ".join(f"{f} ({modes[f]})" for f in refused)
            raise ForbiddenError(f"{account} may not change {detail} of this {type} record",
                                 account=account, action="update", type=type, domain=domain)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _shares(record: Mapping[str, Any]) -> tuple[Share, ...]:
    """The shares of a record given as a mapping (its ``"shares"`` entry), malformed ones left
    out (a share that cannot be read reaches no one)."""
    found: list[Share] = []
    for item in record.get("shares") or ():
        if isinstance(item, Share):
            found.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("level"), str):
            found.append(Share(item["level"], _text(item.get("account")),
                               _text(item.get("department"))))
    return tuple(found)


def _target(type: str, record: Mapping[str, Any], owner_field: str,
            department_field: str) -> Record:
    return Record(type, _text(record.get(owner_field)), _text(record.get(department_field)),
                  shares=_shares(record))

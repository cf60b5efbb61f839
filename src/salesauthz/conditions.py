"""Conditions on record attributes (``where:``) and requirements on the request context
(``requires:``), as data — a leaf module (it imports nothing from salesauthz).

A condition narrows a scope: ``customer:read@all where region in account.territories`` reaches
the records ``all`` reaches whose ``region`` attribute is one of the account's territories.
Tests compare a record attribute (or ``owner``, the record's owner) with a constant or with an
attribute of the account (``account.<name>``):

- ``eq`` (equality), ``in`` (membership in a list), ``lt``/``le``/``gt``/``ge`` (numbers with
  numbers, text with text) and ``null`` (``true``: the value is missing or null; ``false``: it is
  present). Every other test on a missing or null value, on values of different kinds (a number
  and a text, a boolean and a number) or against a missing account attribute is *false*: a deny,
  never an error, never an allow.

Requirements are tested on the request context: ``mfa`` (``true``: a second factor; a number:
at least that assurance level), ``ip`` (the client address is in one of the listed networks),
``hours`` (``"Mon-Fri 08:00-20:00"``: the request's ``now`` falls on those days and times in the
domain's time zone). A key missing from the context fails its requirement.

Stored form (the ``scope`` value of a ``p`` rule): the scope word, or, when conditioned, canonical
JSON in brackets — ``[{"requires":{...},"scope":"all","where":{"region":{"in":"account.t"}}}]``
— sorted keys, no spaces, every ``where`` test in its long form. The brackets keep Casbin's
line-based loaders from splitting the value at its commas.
"""

from __future__ import annotations

import ipaddress
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["OPERATORS", "REQUIREMENTS", "AccountRef", "Condition", "ConditionGuard",
           "RequirementGuard", "Test", "canonical", "decode_scope", "decode_value",
           "encode_scope", "encode_value", "fits_kind", "freeze", "parse_hours", "parse_requires",
           "parse_where", "reference_mismatch", "time_zone", "value_problem"]

OPERATORS: Final = ("eq", "in", "lt", "le", "gt", "ge", "null")
REQUIREMENTS: Final = ("mfa", "ip", "hours")
ACCOUNT_PREFIX: Final = "account."
OWNER: Final = "owner"  # the record's owner, testable like an attribute
DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class AccountRef(NamedTuple):
    """``account.<name>``: the asking account's attribute ``name``."""

    name: str

    def __str__(self) -> str:
        return ACCOUNT_PREFIX + self.name


class Test(NamedTuple):
    """``attribute op operand``; ``operand`` is a constant (lists as tuples) or an
    :class:`AccountRef`."""

    attribute: str
    op: str
    operand: Any

    def __str__(self) -> str:
        if self.op == "null":
            return f"{self.attribute} is {'' if self.operand else 'not '}null"
        symbol = {"eq": "=", "in": "in", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[self.op]
        return f"{self.attribute} {symbol} {_text(self.operand)}"


def _text(value: Any) -> str:
    if isinstance(value, AccountRef):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def freeze(value: Any) -> Any:
    """JSON data made hashable (lists → tuples, objects → sorted item tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, AccountRef):
        return str(value)
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


def _operand(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(ACCOUNT_PREFIX) and len(value) > len(ACCOUNT_PREFIX):
        return AccountRef(value[len(ACCOUNT_PREFIX):])
    return freeze(value)


def parse_where(where: Mapping[str, Any]) -> tuple[Test, ...]:
    """Tests from a ``where:`` mapping (document or stored form); ``ValueError`` on a bad one.

    ``attr: value`` is ``eq`` (``in`` for a list, ``null`` for null); ``attr: {op: operand, ...}``
    ANDs its operators."""
    tests: list[Test] = []
    if not isinstance(where, Mapping):
        raise ValueError("where: must map attributes to tests")
    for attribute, spec in where.items():
        if not isinstance(attribute, str) or not attribute:
            raise ValueError(f"where: {attribute!r} is not an attribute name")
        if spec is None:
            tests.append(Test(attribute, "null", True))
        elif isinstance(spec, Mapping):
            if not spec:
                raise ValueError(f"where: {attribute} has no test")
            for op, operand in spec.items():
                if op not in OPERATORS:
                    raise ValueError(f"where: unknown operator {op!r} for {attribute} (expected "
                                     f"{', '.join(OPERATORS)})")
                if op == "null" and not isinstance(operand, bool):
                    raise ValueError(f"where: {attribute}: null takes true or false")
                if op == "in" and not (isinstance(operand, list | tuple)
                                       or (isinstance(operand, str)
                                           and operand.startswith(ACCOUNT_PREFIX))):
                    raise ValueError(f"where: {attribute}: in takes a list or account.<attribute>")
                tests.append(Test(attribute, op, operand if op == "null" else _operand(operand)))
        elif isinstance(spec, list):
            tests.append(Test(attribute, "in", _operand(spec)))
        else:
            tests.append(Test(attribute, "eq", _operand(spec)))
    return tuple(sorted(set(tests), key=lambda t: (t.attribute, t.op, repr(t.operand))))


def parse_requires(requires: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Requirements from a ``requires:`` mapping; ``ValueError`` on a bad one."""
    if not isinstance(requires, Mapping):
        raise ValueError("requires: must map mfa, ip or hours to what they need")
    found: list[tuple[str, Any]] = []
    for key, value in requires.items():
        if key == "mfa":
            if isinstance(value, bool):
                if not value:
                    continue  # "mfa: false" requires nothing
            elif not isinstance(value, int) or value < 1:
                raise ValueError("requires: mfa takes true or an assurance level (1, 2, ...)")
        elif key == "ip":
            networks = [value] if isinstance(value, str) else value
            if not isinstance(networks, list | tuple) or not networks:
                raise ValueError("requires: ip takes a list of networks, e.g. [10.0.0.0/8]")
            for network in networks:
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError:
                    raise ValueError(f"requires: ip: {network!r} is not a network (CIDR, e.g. "
                                     "10.0.0.0/8)") from None
            value = tuple(sorted(str(n) for n in networks))
        elif key == "hours":
            if not isinstance(value, str):
                raise ValueError('requires: hours takes text like "Mon-Fri 08:00-20:00"')
            parse_hours(value)
        else:
            raise ValueError(f"requires: unknown requirement {key!r} (expected "
                             f"{', '.join(REQUIREMENTS)})")
        found.append((key, value))
    return tuple(sorted(found))


_HOURS = re.compile(r"^(?:(?P<d1>[A-Z][a-z]{2})(?:-(?P<d2>[A-Z][a-z]{2}))?\s+)?"
                    r"(?P<h1>\d{2}):(?P<m1>\d{2})-(?P<h2>\d{2}):(?P<m2>\d{2})$")


@lru_cache(maxsize=256)
def parse_hours(text: str) -> tuple[frozenset[int], int, int]:
    """``"Mon-Fri 08:00-20:00"`` → (weekdays 0-6, start minute, end minute); the days may be
    omitted (every day), one day, or a range (``Fri-Mon`` wraps). ``ValueError`` on bad text."""
    match = _HOURS.match(text.strip())
    bad = f'hours {text!r}: expected e.g. "Mon-Fri 08:00-20:00" (days optional, 00:00-24:00)'
    if match is None:
        raise ValueError(bad)
    first, last = match["d1"], match["d2"] or match["d1"]
    if first is None:
        days = frozenset(range(7))
    else:
        if first not in DAYS or last not in DAYS:
            raise ValueError(bad)
        start_day, end_day = DAYS.index(first), DAYS.index(last)
        span = (end_day - start_day) % 7
        days = frozenset((start_day + i) % 7 for i in range(span + 1))
    start = int(match["h1"]) * 60 + int(match["m1"])
    end = int(match["h2"]) * 60 + int(match["m2"])
    if int(match["m1"]) > 59 or int(match["m2"]) > 59 or start >= end or end > 24 * 60:
        raise ValueError(bad)
    return days, start, end


@lru_cache(maxsize=256)
def time_zone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``ValueError`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name, e.g. Asia/Shanghai)") from None


@dataclass(frozen=True, slots=True)
class Condition:
    """The ``where:`` tests and ``requires:`` requirements of a permission (ANDed)."""

    where: tuple[Test, ...] = ()
    requires: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, where: Mapping[str, Any] | None = None,
           requires: Mapping[str, Any] | None = None) -> Condition | None:
        """A condition from document mappings (``None`` when both are empty)."""
        condition = cls(parse_where(where or {}), parse_requires(requires or {}))
        return condition if condition.where or condition.requires else None

    def stored(self) -> dict[str, Any]:
        """The JSON form (long-form tests)."""
        body: dict[str, Any] = {}
        if self.where:
            where: dict[str, dict[str, Any]] = {}
            for test in self.where:
                where.setdefault(test.attribute, {})[test.op] = _thawed(test.operand)
            body["where"] = where
        if self.requires:
            body["requires"] = {key: _thawed(value) for key, value in self.requires}
        return body

    def resolve(self, attributes: Mapping[str, Any], time_zone_name: str) -> tuple[
            ConditionGuard | None, RequirementGuard | None] | None:
        """The guards this condition puts on one account's records: ``account.<name>`` operands
        replaced by the account's values (``attributes``); ``None`` when an operand names an
        attribute the account lacks (the condition never holds)."""
        tests: list[Test] = []
        for test in self.where:
            operand = test.operand
            if isinstance(operand, AccountRef):
                value = attributes.get(operand.name)
                if value is None:
                    return None
                operand = freeze(value)
                if test.op == "in" and not isinstance(operand, tuple):
                    operand = (operand,)  # one value: membership is equality
            tests.append(Test(test.attribute, test.op, operand))
        where = _interned_guard(tuple(tests), self.where) if tests else None
        requires = RequirementGuard(self.requires, time_zone_name) if self.requires else None
        return where, requires

    def __str__(self) -> str:
        parts = []
        if self.where:
            parts.append("where " + " and ".join(str(t) for t in self.where))
        if self.requires:
            parts.append("[" + ", ".join(_requirement_text(k, v) for k, v in self.requires) + "]")
        return " ".join(parts)


def _requirement_text(key: str, value: Any) -> str:
    if key == "mfa":
        return "mfa" if value is True else f"mfa>={value}"
    if key == "ip":
        return "ip in " + " or ".join(value)
    return f"hours {value}"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_scope(word: str, condition: Condition) -> str:
    return "[" + canonical({"scope": word, **condition.stored()}) + "]"


def decode_scope(text: str) -> tuple[str, Condition]:
    """(scope word, condition) of a stored conditioned scope; ``ValueError`` on bad text."""
    try:
        loaded = json.loads(text)
    except ValueError:
        raise ValueError(f"invalid conditioned scope {text!r}: not JSON") from None
    if (not isinstance(loaded, list) or len(loaded) != 1 or not isinstance(loaded[0], dict)
            or not isinstance(loaded[0].get("scope"), str)
            or set(loaded[0]) - {"scope", "where", "requires"}):
        raise ValueError(f"invalid conditioned scope {text!r}: expected "
                         '[{"scope": ..., "where": {...}, "requires": {...}}]')
    body = loaded[0]
    condition = Condition.of(body.get("where"), body.get("requires"))
    if condition is None:
        raise ValueError(f"invalid conditioned scope {text!r}: no condition")
    return body["scope"], condition


def encode_value(value: Any) -> str:
    """The stored form of an account attribute's value: canonical JSON in brackets."""
    return "[" + canonical(value) + "]"


def decode_value(text: str) -> Any:
    loaded = json.loads(text)
    if not isinstance(loaded, list) or len(loaded) != 1:
        raise ValueError(f"invalid attribute value {text!r}: expected [<JSON>]")
    return loaded[0]


def value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an account attribute's value (``None`` when it can): text, a
    number, a boolean, or a list of them."""
    scalars = (str, int, float, bool)
    if isinstance(value, scalars):
        return None
    if isinstance(value, list | tuple):
        odd = next((v for v in value if not isinstance(v, scalars)), _MISSING)
        if odd is _MISSING:
            return None
        return f"a list item {odd!r} is not text, a number or a boolean"
    if value is None:
        return "null is not a value (remove the attribute instead)"
    return f"{value!r} is not text, a number, a boolean or a list of them"


_MISSING: Final = object()


def fits_kind(value: Any, kind: str) -> bool:
    """Whether the constant ``value`` is of the declared attribute ``kind`` (``str``, ``int``,
    ``float`` — whole numbers too — or ``bool``)."""
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)


def reference_mismatch(value: Any, op: str, kinds: frozenset[str] | set[str]) -> tuple[bool, Any]:
    """Whether an account attribute's ``value`` can never pass ``attribute op account.<name>``
    for a record attribute of the declared ``kinds`` (``True`` with the offending value), e.g.
    ``[1, 2]`` for ``region: {in: account.territories}`` where ``region`` is ``str``, or a list
    compared by anything but ``in``. Unknown ``kinds`` (undeclared): never a mismatch."""
    if not kinds:
        return False, None
    if isinstance(value, list | tuple) and op != "in":
        return True, value
    for item in (value if isinstance(value, list | tuple) else [value]):
        if isinstance(item, list | tuple | dict) or not any(fits_kind(item, k) for k in kinds):
            return True, item
    return False, None


# -- evaluation --------------------------------------------------------------------------------


def value_kind(value: Any) -> str | None:
    """How conditions compare ``value``: ``bool``, ``number``, ``text``, or None (never equal)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def _equal(value: Any, constant: Any) -> bool:
    kind = value_kind(value)
    return kind is not None and kind == value_kind(constant) and value == constant


def passes(test: Test, value: Any) -> bool:
    """Whether ``value`` (the record's, ``None`` when missing) passes ``test`` (constant operand)."""
    op, operand = test.op, test.operand
    if op == "null":
        return (value is None) is operand
    if value is None:
        return False
    if op == "eq":
        return _equal(value, operand)
    if op == "in":
        return isinstance(operand, tuple) and any(_equal(value, item) for item in operand)
    kind = value_kind(value)
    if kind not in ("number", "text") or kind != value_kind(operand):
        return False
    if op == "lt":
        return bool(value < operand)
    if op == "le":
        return bool(value <= operand)
    if op == "gt":
        return bool(value > operand)
    return bool(value >= operand)  # ge


Predicate = Callable[[Any], bool]


def _never(value: Any) -> bool:
    return False


_NUMBERS: Final = (int, float)


def compile_test(test: Test) -> Predicate:
    """``value -> passes(test, value)`` for a test with a constant operand, specialised by
    operator and operand kind once (a guard is built once per account and type, and tested on
    every check): the same answers as :func:`passes`, without its dispatch. Exact ``str``,
    ``int`` and ``float`` values take the short way; their subclasses (an ``IntEnum``, a
    ``StrEnum``) the general one, as in :func:`passes` (``bool`` is never a number)."""
    op, operand = test.op, test.operand
    if op == "null":
        if operand:
            return lambda value: value is None
        return lambda value: value is not None
    kind = value_kind(operand)
    if op == "in":
        if not isinstance(operand, tuple):
            return _never
        texts = frozenset(v for v in operand if value_kind(v) == "text")
        bools = frozenset(v for v in operand if value_kind(v) == "bool")
        numbers = frozenset(v for v in operand if value_kind(v) == "number" and v == v)  # no NaN

        def member(value: Any) -> bool:
            if isinstance(value, str):
                return value in texts
            if isinstance(value, bool):
                return value in bools
            if isinstance(value, _NUMBERS):
                return value in numbers
            return False

        return member
    if op == "eq":
        if kind == "text":
            return lambda value: value == operand and isinstance(value, str)
        if kind == "bool":
            return lambda value: value is operand
        if kind == "number":
            return lambda value: (value == operand and isinstance(value, _NUMBERS)
                                  and not isinstance(value, bool))
        return _never
    compare = _COMPARE.get(op)
    if compare is None:
        return _never
    if kind == "text":
        def text(value: Any) -> bool:
            return isinstance(value, str) and compare(value, operand)
        return text
    if kind == "number":
        def number(value: Any) -> bool:
            kind_of = type(value)
            if kind_of is int or kind_of is float:
                return compare(value, operand)
            return (isinstance(value, _NUMBERS) and not isinstance(value, bool)
                    and bool(compare(value, operand)))
        return number
    return _never


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_NO_ATTRIBUTES: Final[Mapping[str, Any]] = {}


_GUARDS: dict[str, ConditionGuard] = {}
_GUARDS_MAX = 65_536


def _interned_guard(tests: tuple[Test, ...], source: tuple[Test, ...]) -> ConditionGuard:
    """One guard object for every account whose condition resolves to the same tests (the
    accounts of a territory share it): a check then finds the guard, its compiled tests and
    their constants in the processor's cache, not one copy per account. Keyed by the tests'
    ``repr``, which tells ``True``, ``1`` and ``1.0`` apart (they are equal, and hash alike, as
    Python values, but a test treats them differently). Bounded: starts afresh when full."""
    key = repr((tests, source))
    guard = _GUARDS.get(key)
    if guard is None:
        if len(_GUARDS) >= _GUARDS_MAX:
            _GUARDS.clear()
        guard = _GUARDS.setdefault(key, ConditionGuard(tests, source))
    return guard


@dataclass(frozen=True, slots=True)
class ConditionGuard:
    """The record's attributes pass every test (operands already resolved for one account);
    ``source`` is the condition as written (for explanations)."""

    tests: tuple[Test, ...]
    source: tuple[Test, ...] = ()
    # (attribute, predicate) per test, compiled once: not part of equality or the hash.
    # (attribute — None for the record's owner —, predicate) per test, compiled once: not part
    # of equality or the hash.
    _checks: tuple[tuple[str | None, Predicate], ...] = field(init=False, repr=False,
                                                              compare=False, hash=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", tuple(
            (None if t.attribute == OWNER else t.attribute, compile_test(t)) for t in self.tests))

    def holds(self, owner: str | None, shares: tuple[Any, ...],
              attributes: Mapping[str, Any] | None, context: Mapping[str, Any] | None) -> bool:
        if attributes is None:
            attributes = _NO_ATTRIBUTES
        for attribute, check in self._checks:
            if not check(owner or None if attribute is None else attributes.get(attribute)):
                return False
        return True

    def failing(self, owner: str | None, attributes: Mapping[str, Any] | None) -> list[str]:
        """Why the tests fail for this record, one phrase per failing test."""
        found = []
        for test, written in zip(self.tests, self.source or self.tests, strict=False):
            value = (owner or None) if test.attribute == OWNER else \
                (attributes or {}).get(test.attribute)
            if not passes(test, value):
                shown = "missing" if value is None else repr(value)
                found.append(f"{written.attribute} is {shown}" + (
                    f" (account value {_text(test.operand)})"
                    if isinstance(written.operand, AccountRef) else ""))
        return found

    def __str__(self) -> str:
        return "where " + " and ".join(str(t) for t in (self.source or self.tests))


@dataclass(frozen=True, slots=True)
class RequirementGuard:
    """The request context meets every requirement (``hours`` in ``time_zone_name``)."""

    requires: tuple[tuple[str, Any], ...]
    time_zone_name: str = "UTC"

    def holds(self, owner: str | None, shares: tuple[Any, ...],
              attributes: Mapping[str, Any] | None, context: Mapping[str, Any] | None) -> bool:
        return not self.failing(context)

    def failing(self, context: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        """``(key, why)`` for each requirement the context does not meet."""
        found: list[tuple[str, str]] = []
        context = context or {}
        for key, need in self.requires:
            have = context.get(key)
            if key == "mfa":
                level: Any = 1 if have is True else have if value_kind(have) == "number" else 0
                want: Any = 1 if need is True else need
                if not level >= want:
                    found.append((key, "needs a second factor; this session has none"
                                  if not level else f"needs assurance level {want}; "
                                  f"this session has {level}"))
            elif key == "ip":
                if not _address_in(have, need):
                    found.append((key, "needs a request from " + " or ".join(need) + (
                        "; this request has no address" if have is None
                        else f"; this request comes from {have}")))
            elif key == "hours" and not _within_hours(context.get("now"), need,
                                                      self.time_zone_name):
                found.append((key, f"is allowed only {need} ({self.time_zone_name})"))
        return found

    def __str__(self) -> str:
        return "[" + ", ".join(_requirement_text(k, v) for k, v in self.requires) + "]"


def _address_in(address: Any, networks: tuple[str, ...]) -> bool:
    if not isinstance(address, str):
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in ipaddress.ip_network(n, strict=False) for n in networks
               if ipaddress.ip_network(n, strict=False).version == parsed.version)


def _within_hours(now: Any, hours: str, zone: str) -> bool:
    if isinstance(now, datetime):
        moment = now.timestamp() if now.tzinfo is not None else None
    elif value_kind(now) == "number":
        moment = float(now)
    else:
        moment = None
    if moment is None:
        return False
    try:
        local = datetime.fromtimestamp(moment, time_zone(zone))
    except (ValueError, OverflowError, OSError):
        return False
    days, start, end = parse_hours(hours)
    minute = local.hour * 60 + local.minute
    return local.weekday() in days and start <= minute < end

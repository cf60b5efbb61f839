"""The Casbin rule vocabulary salesauthz stores its whole state in.

Every fact is one Casbin policy line, so any Casbin adapter can hold it (six values at most, the
width of the common ``casbin_rule`` table). A rule is a plain tuple ``(ptype, v0, v1, ...)``.

=====  ============================================  ===========================================
ptype  values                                        meaning
=====  ============================================  ===========================================
p      subject, domain, type, action, scope, expires  a permission of a role, or a direct grant to
                                                      an account; ``expires`` is ISO-8601 UTC or ""
p2     domain, type, action                          the action vocabulary: ``action`` exists on
                                                      ``type`` in ``domain``
p3     account, domain, status                       an account exists, with its status
p4     role, domain                                  a role exists
g      subject, role, domain                         account → role assignment; role → role
                                                      inheritance
g2     department, parent, domain                    the department tree (parent "" for a root)
g3     account, department, domain                   the department an account belongs to
g4     sub-account, parent account, domain           the sub-account hierarchy
p5     role, domain, type, field, mode, scope        a field rule: ``mode`` (visible, readonly,
                                                      hidden) for the field; with a ``scope``, only
                                                      on records within it ("" = everywhere)
p6     domain, type, field                           the field vocabulary of a type
p7     domain, type, level, action                   a share level of a type includes ``action``
                                                      (the ``sharing`` section)
p8     account, role, domain, expires                a role assigned until ``expires`` (ISO-8601)
g5     account, department, domain                   an auxiliary department of an account
g6     account, superior, domain                     the account reports to ``superior``
p9     account, domain, name, value                  an attribute of an account (``value`` is
                                                      canonical JSON in brackets: ``["East"]``)
p10    domain, type, name, kind                      a declared attribute of a resource type
                                                      (kind: str, int, float, bool)
p11    domain, name, value                           a domain setting (``time_zone``,
                                                      ``sensitive_actions``: a JSON list)
p12    department, domain, type, action, scope,      a grant to a department: every account whose
       expires                                       main or auxiliary department is it or below
                                                      it holds the permission (a sharing rule)
=====  ============================================  ===========================================

A permission's scope may carry a condition (``where:`` tests on record attributes, ``requires:``
on the request context): its ``scope`` value is then canonical JSON in brackets
(:mod:`salesauthz.conditions`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

Rule = tuple[str, ...]
"""``(ptype, v0, v1, ...)`` — one Casbin policy line."""

PERMISSION: Final = "p"
VOCABULARY: Final = "p2"
ACCOUNT: Final = "p3"
ROLE: Final = "p4"
ROLE_LINK: Final = "g"
DEPARTMENT: Final = "g2"
MEMBERSHIP: Final = "g3"
PARENT: Final = "g4"
FIELD_RULE: Final = "p5"
FIELD: Final = "p6"
SHARE_LEVEL: Final = "p7"
TIMED_ROLE: Final = "p8"
AUXILIARY: Final = "g5"
REPORTS_TO: Final = "g6"
ACCOUNT_ATTRIBUTE: Final = "p9"
RESOURCE_ATTRIBUTE: Final = "p10"
SETTING: Final = "p11"
DEPARTMENT_GRANT: Final = "p12"
ATTRIBUTE_KINDS: Final = ("str", "int", "float", "bool")
SETTINGS: Final = ("time_zone", "sensitive_actions")
FIELD_MODES: Final = ("visible", "readonly", "hidden")  # most permissive first

ARITY: Final[dict[str, int]] = {
    PERMISSION: 6,
    VOCABULARY: 3,
    ACCOUNT: 3,
    ROLE: 2,
    ROLE_LINK: 3,
    DEPARTMENT: 3,
    MEMBERSHIP: 3,
    PARENT: 3,
    FIELD_RULE: 6,
    FIELD: 3,
    SHARE_LEVEL: 4,
    TIMED_ROLE: 4,
    AUXILIARY: 3,
    REPORTS_TO: 3,
    ACCOUNT_ATTRIBUTE: 4,
    RESOURCE_ATTRIBUTE: 4,
    SETTING: 3,
    DEPARTMENT_GRANT: 6,
}
"""How many values each rule type carries (after the ptype)."""

DOMAIN_FIELD: Final[dict[str, int]] = {
    PERMISSION: 1,
    VOCABULARY: 0,
    ACCOUNT: 1,
    ROLE: 1,
    ROLE_LINK: 2,
    DEPARTMENT: 2,
    MEMBERSHIP: 2,
    PARENT: 2,
    FIELD_RULE: 1,
    FIELD: 0,
    SHARE_LEVEL: 0,
    TIMED_ROLE: 2,
    AUXILIARY: 2,
    REPORTS_TO: 2,
    ACCOUNT_ATTRIBUTE: 1,
    RESOURCE_ATTRIBUTE: 0,
    SETTING: 0,
    DEPARTMENT_GRANT: 1,
}
"""Index (among the values) of the domain of each rule type."""

STATUSES: Final = ("active", "frozen", "deactivated")

# Built into every domain: accounts are records too (``account:manage``), and the escalate right
# is the only way around the delegation rule (``role:escalate``).
BUILTIN_VOCABULARY: Final[dict[str, tuple[str, ...]]] = {
    "account": ("manage",),
    "role": ("escalate",),
}

WILDCARD: Final = "*"

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def domain_of(rule: Rule) -> str:
    """The domain a rule belongs to."""
    return rule[1 + DOMAIN_FIELD[rule[0]]]


def check_rule(rule: Rule) -> str | None:
    """Why ``rule`` is malformed, or ``None`` if its shape is right.

    Only shape is checked here (ptype, arity, non-empty identifiers, scope and time syntax);
    whether names refer to anything is the validator's business.
    """
    if not isinstance(rule, tuple) or not rule:
        return "a rule must be a non-empty tuple"
    ptype = rule[0]
    if ptype not in ARITY:
        return f"unknown rule type {ptype!r} (expected one of {', '.join(ARITY)})"
    values = rule[1:]
    if len(values) != ARITY[ptype]:
        return f"rule type {ptype!r} takes {ARITY[ptype]} values, got {len(values)}"
    for value in values:
        if not isinstance(value, str):
            return f"rule values must be strings, got {type(value).__name__}"
        if "\x00" in value:
            return "rule values must not contain NUL characters"
        if not value.isascii() and _SURROGATE.search(value):
            # Not Unicode text: no store could encode it (SQL drivers raise UnicodeEncodeError).
            return f"rule value {value!r} contains a lone surrogate: values must be valid Unicode text"
    optional = {(PERMISSION, 5), (DEPARTMENT_GRANT, 5), (DEPARTMENT, 1),
                (FIELD_RULE, 5)}  # expires; root's parent; scope
    for position, value in enumerate(values):
        if value == "" and (ptype, position) not in optional:
            return f"value {position} of a {ptype!r} rule must not be empty"
    if ptype in (PERMISSION, DEPARTMENT_GRANT):
        from .scopes import parse_scope  # local: scopes imports this module

        try:
            parse_scope(values[4])
        except ValueError as exc:
            return str(exc)
        if values[5]:
            try:
                parse_expiry(values[5])
            except ValueError as exc:
                return str(exc)
    if ptype == FIELD_RULE:
        if values[4] not in FIELD_MODES:
            return f"unknown field mode {values[4]!r} (expected one of {', '.join(FIELD_MODES)})"
        if values[5]:
            from .scopes import parse_scope

            try:
                parse_scope(values[5])
            except ValueError as exc:
                return str(exc)
    if ptype == TIMED_ROLE:
        try:
            parse_expiry(values[3])
        except ValueError as exc:
            return str(exc)
    if ptype == ACCOUNT_ATTRIBUTE:
        from .conditions import decode_value

        try:
            decode_value(values[3])
        except ValueError:
            return f"invalid attribute value {values[3]!r}: expected canonical JSON in brackets"
    if ptype == RESOURCE_ATTRIBUTE and values[3] not in ATTRIBUTE_KINDS:
        return (f"unknown attribute kind {values[3]!r} (expected one of "
                f"{', '.join(ATTRIBUTE_KINDS)})")
    if ptype == SETTING:
        if values[1] not in SETTINGS:
            return f"unknown domain setting {values[1]!r} (expected one of {', '.join(SETTINGS)})"
        if values[1] == "time_zone":
            from .conditions import time_zone

            try:
                time_zone(values[2])
            except ValueError as exc:
                return str(exc)
        else:
            import json

            try:
                listed = json.loads(values[2])
            except ValueError:
                listed = None
            if not (isinstance(listed, list) and all(isinstance(a, str) and a for a in listed)):
                return f"invalid sensitive_actions {values[2]!r}: expected a JSON list of actions"
    if ptype == FIELD_RULE and values[5].startswith("["):
        return "a field rule's scope cannot carry a condition"
    if ptype == ACCOUNT and values[2] not in STATUSES:
        return f"unknown account status {values[2]!r} (expected one of {', '.join(STATUSES)})"
    return None


def parse_expiry(text: str) -> float:
    """Seconds since the epoch for an ISO-8601 expiry; naive times are taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid expiry {text!r}: use ISO-8601, e.g. 2026-12-31T18:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_expiry(moment: datetime | None) -> str:
    """The stored form of an expiry: ISO-8601 in UTC with a ``Z``, or "" for never."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_expiry_at(moment: float) -> str:
    """The stored form of an expiry given in seconds since the epoch."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def casbin_value_problem(value: str) -> str | None:
    """Why ``value`` would not come back unchanged through Casbin's line-based policy loaders,
    or ``None`` if it would.

    pycasbin's adapters (the file adapter, ``casbin-sqlalchemy-adapter`` and most others) join a
    rule's values with ``", "`` and split the line again with ``persist.load_policy_line``,
    which splits at every comma outside brackets, fails on a closing bracket with no opening
    one, lets an unclosed bracket swallow the following values, and strips each value; the file
    adapter also reads one rule per line. So a value survives exactly when it has no comma
    outside brackets, balanced ``()``/``[]`` brackets, no leading or trailing whitespace and no
    line feed.
    """
    if "\n" in value:
        return "it contains a line feed (a policy file holds one rule per line)"
    if value != value.strip():
        return "it starts or ends with whitespace (Casbin's loaders strip every value)"
    depth = 0
    for character in value:
        if character in "([":
            depth += 1
        elif character in ")]":
            if depth == 0:
                return (f"it has a {character!r} with no opening bracket before it "
                        "(pycasbin's loader fails on it)")
            depth -= 1
        elif character == "," and depth == 0:
            return "it contains a comma outside brackets (Casbin's loaders split the value there)"
    if depth:
        return "it has an unclosed bracket (pycasbin's loader merges the following values into it)"
    return None

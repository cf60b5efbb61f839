"""Pydantic models of the policy documents policy authors write (one YAML file per domain).

```yaml
domain: acme
resources:                      # the vocabulary: type -> actions
  customer: [read, create, update, delete, export, assign]
departments:                    # the tree, flat: each department names its parent
  sales: {}
  east: {parent: sales}
  service:
    grants:                     # held by every account in service or below it (main or auxiliary)
      - scope: {custom: [east]}
        customer: [read]
roles:
  senior_rep:
    inherits: [junior_rep]
    permissions:
      - scope: team             # own | team | department_tree | all | {custom: [dept, ...]}
        customer: [read, update]
sharing:                        # share levels per type: what a share at each level allows
  customer:
    read_only: [read]
    read_write: [read, update]
accounts:
  lead_e1: {department: east-1, roles: [senior_rep]}
  rep_e2:
    department: east-2
    also_in: [service]          # auxiliary departments
    reports_to: lead_e1         # reporting superior (visibility, never a ceiling)
    roles: [junior_rep, {role: senior_rep, expires: 2027-03-31}]
```
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "AccountDocument",
    "CustomScope",
    "DepartmentDocument",
    "DomainDocument",
    "FieldRuleDocument",
    "PermissionSet",
    "RoleDocument",
    "ScopeSpec",
    "TimedRole",
]

SENSITIVE_ACTIONS = ("export", "delete", "assign", "account:manage")
"""What ``sensitive_actions: true`` lists: actions that should need a strong session."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_text(value: object) -> object:
    """Refuse, naming the value, what no store can hold: NUL, and lone surrogates (Python text
    that is not Unicode: it cannot be encoded to UTF-8, so SQL drivers would raise on it)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{value!r} contains a NUL character, which a name may not")
        surrogate = _SURROGATE.search(value)
        if surrogate is not None:
            raise ValueError(f"{value!r} contains a lone surrogate (U+{ord(surrogate.group()):04X}): "
                             "a name must be valid Unicode text")
    return value


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00]*$"),  # (the schema's view)
    BeforeValidator(_valid_text),  # last, so it runs first: NUL and surrogates get its message
]
"""An identifier: any non-empty Unicode text without NUL (commas, quotes, 华东一组 … are fine)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class CustomScope(_Strict):
    """A ``custom`` scope: records in the listed departments (and below them)."""

    custom: list[Name] = Field(min_length=1, description="Departments whose subtrees are covered.")


_SCOPE_WORDS = ("own", "shared", "subordinates", "team", "subordinate_tree", "department_tree",
                "all")

ScopeSpec = Literal["own", "shared", "subordinates", "team", "subordinate_tree",
                    "department_tree", "all"] | CustomScope
"""``own``, ``shared``, ``subordinates``, ``team``, ``subordinate_tree``, ``department_tree``,
``all`` or ``{custom: [department, ...]}``."""


class PermissionSet(BaseModel):
    """Actions on resource types at one scope: ``{scope: team, customer: [read, update]}``.

    Every key other than ``scope`` and ``expires`` is a resource type (or ``"*"`` for every
    type) mapped to its actions (``"*"`` for every action of the type).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[Name, list[Name]] = Field(init=False)  # type -> actions

    scope: ScopeSpec = Field(description="Which records these actions reach.")
    expires: datetime | None = Field(
        default=None,
        description="Direct grants only: when the grant stops allowing (ISO-8601; UTC if naive).",
    )
    where: dict[str, Any] | None = Field(
        default=None,
        description="Conditions on record attributes, ANDed with the scope: `region: East`, "
        "`amount: {lt: 100000}`, `region: {in: account.territories}`, `owner: null`.")
    requires: dict[str, Any] | None = Field(
        default=None,
        description="Requirements on the request context: `mfa: true`, `ip: [10.0.0.0/8]`, "
        '`hours: "Mon-Fri 08:00-20:00"`.')

    @field_validator("expires")
    @classmethod
    def _expiry_in_range(cls, value: datetime | None) -> datetime | None:
        return value if value is None else _utc_ok(value)

    @field_validator("scope", mode="before")
    @classmethod
    def _scope_words(cls, value: object) -> object:
        if isinstance(value, str) and value not in _SCOPE_WORDS:
            hint = " (write {custom: [dept, ...]})" if value.startswith("custom") else ""
            raise ValueError(
                f"unknown scope {value!r}: use {', '.join(_SCOPE_WORDS)} or "
                f"{{custom: [department, ...]}}{hint}"
            )
        if not isinstance(value, str | dict | CustomScope):
            raise ValueError(f"a scope is a word ({', '.join(_SCOPE_WORDS)}) or {{custom: [...]}}")
        return value

    @property
    def actions(self) -> dict[str, list[str]]:
        """``type → actions`` of this set."""
        return dict(self.__pydantic_extra__ or {})


FieldModeName = Literal["visible", "readonly", "hidden"]


class FieldRuleDocument(_Strict):
    """A record-conditional field rule: ``mode`` on records within ``scope``, ``otherwise``
    elsewhere (when ``otherwise`` is omitted the field is hidden elsewhere, as far as this role
    is concerned)."""

    mode: FieldModeName
    scope: ScopeSpec
    otherwise: FieldModeName | None = None

    @field_validator("scope", mode="before")
    @classmethod
    def _scope_words(cls, value: object) -> object:
        return PermissionSet._scope_words(value)


FieldSpec = FieldModeName | FieldRuleDocument
"""``visible``, ``readonly``, ``hidden``, or ``{mode: visible, scope: own, otherwise: readonly}``."""


class RoleDocument(_Strict):
    """A role: a named permission template, optionally inheriting other roles."""

    description: str = ""
    inherits: list[Name] = Field(
        default_factory=list, description="Roles whose permissions this role also has."
    )
    permissions: list[PermissionSet] = Field(default_factory=list)
    fields: dict[Name, dict[Name, FieldSpec]] = Field(
        default_factory=dict,
        description="Field rules per resource type: field -> visible, readonly, hidden, or a "
        "record-conditional rule.",
    )


def _utc_ok(value: datetime) -> datetime:
    try:  # stored in UTC: a time that has no UTC form (year 1 or 9999) is refused here
        (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"expires: {value.isoformat()} is out of range once converted to "
                         "UTC") from None
    return value


class TimedRole(_Strict):
    """A role assigned until a moment: ``{role: senior_rep, expires: 2027-03-31}``."""

    role: Name
    expires: datetime = Field(description="When the assignment ends (ISO-8601; UTC if naive).")

    @field_validator("expires")
    @classmethod
    def _expiry_in_range(cls, value: datetime) -> datetime:
        return _utc_ok(value)


class AccountDocument(_Strict):
    """A user of the CRM."""

    department: Name | None = Field(default=None, description="Its main department (主属部门).")
    roles: list[Name | TimedRole] = Field(
        default_factory=list, description="Roles, each a name or {role: name, expires: time}.")
    parent: Name | None = Field(
        default=None, description="Makes this a sub-account: its rights never exceed the parent's."
    )
    status: Literal["active", "frozen", "deactivated"] = "active"
    grants: list[PermissionSet] = Field(
        default_factory=list, description="Direct grants, outside any role."
    )
    also_in: list[Name] = Field(default_factory=list,
                                description="Its auxiliary departments (附属部门).")
    reports_to: Name | None = Field(
        default=None, description="Its reporting superior (汇报对象): visibility through the "
        "subordinates scopes, never a ceiling.")
    attributes: dict[Name, Any] = Field(
        default_factory=dict, description="Values conditions compare with `account.<name>` "
        "(text, numbers, booleans, lists of them): `territories: [East, North]`.")

    @property
    def role_names(self) -> list[str]:
        """The assigned roles' names, one per entry of ``roles`` (timed ones included)."""
        return [entry if isinstance(entry, str) else entry.role for entry in self.roles]


class DepartmentDocument(_Strict):
    """A node of the org tree; ``parent`` is omitted for a top-level department. ``grants`` are
    held by every account whose main or auxiliary department is this one or below it (a
    sharing rule: ``{scope: {custom: [east]}, customer: [read]}`` lets them read east's
    customers), each under the account's usual ceiling."""

    parent: Name | None = None
    description: str = ""
    grants: list[PermissionSet] = Field(
        default_factory=list, description="Grants to the department: held by every account "
        "whose main or auxiliary department is in its subtree (scopes relative to that account).")


class DomainDocument(_Strict):
    """One tenant: its vocabulary, department tree, roles and accounts."""

    domain: Name = Field(description="The tenant's identifier.")
    description: str = ""
    resources: dict[Name, list[Name]] = Field(
        default_factory=dict,
        description="Resource types and their actions. `account: [manage]` and "
        "`role: [escalate]` are built in.",
    )
    fields: dict[Name, list[Name]] = Field(
        default_factory=dict,
        description="The fields of each resource type that field rules may name (optional; "
        "when a type lists its fields, rules naming others are errors).",
    )
    departments: dict[Name, DepartmentDocument | None] = Field(default_factory=dict)
    roles: dict[Name, RoleDocument | None] = Field(default_factory=dict)
    sharing: dict[Name, dict[Name, list[Name]]] = Field(
        default_factory=dict,
        description="Share levels per resource type: level -> the actions a share at that level "
        "allows (through the `shared` scope).")
    accounts: dict[Name, AccountDocument | None] = Field(default_factory=dict)
    resource_attributes: dict[Name, dict[Name, Literal["str", "int", "float", "bool"]]] = Field(
        default_factory=dict,
        description="The attributes of each resource type conditions may test, with their kinds "
        "(written in the long form of `resources`: `customer: {actions: [...], attributes: "
        "{region: str}}`).")
    time_zone: str | None = Field(
        default=None, description="The tenant's IANA time zone for `requires: hours` (UTC).")
    sensitive_actions: list[Name] | None = Field(
        default=None,
        description="Turns on the `check` lint SA214 for this domain: each listed action "
        "(`export`, any type's; `customer:export`; `account:manage`) held without a `requires:` "
        "is reported. `true` lists export, delete, assign and account:manage.")

    @field_validator("sensitive_actions", mode="before")
    @classmethod
    def _default_sensitive(cls, value: object) -> object:
        if value is True:
            return list(SENSITIVE_ACTIONS)
        if value is False:
            return None
        return value

    @field_validator("departments", "roles", "accounts", "sharing", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @model_validator(mode="before")
    @classmethod
    def _long_resources(cls, data: Any) -> Any:
        """``customer: {actions: [...], attributes: {...}}`` → the actions under ``resources``
        and the attributes under ``resource_attributes``."""
        if not isinstance(data, dict) or not isinstance(data.get("resources"), dict):
            return data
        resources = data["resources"]
        if not any(isinstance(spec, dict) for spec in resources.values()):
            return data
        data = dict(data)
        declared = dict(data.get("resource_attributes") or {})
        flat: dict[Any, Any] = {}
        for typ, spec in resources.items():
            if isinstance(spec, dict) and set(spec) <= {"actions", "attributes"}:
                flat[typ] = spec.get("actions", [])
                if spec.get("attributes"):
                    declared[typ] = spec["attributes"]
            else:
                flat[typ] = spec
        data["resources"] = flat
        data["resource_attributes"] = declared
        return data

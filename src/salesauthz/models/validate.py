"""Semantic validation of policy documents: every reference resolves, no cycles, no clashes.

Structural errors (wrong types, unknown keys) come from pydantic; this module checks what a
schema cannot: that names refer to things that exist, in the same domain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from salesauthz import _rules as R
from salesauthz import conditions as C
from salesauthz._rules import Rule
from salesauthz._wording import did_you_mean, docs_url, value_kind
from salesauthz.errors import PolicyError, PolicyIssue

from ._yaml import Path, Positions, position_of, shown
from .documents import (
    AccountDocument,
    CustomScope,
    DomainDocument,
    FieldRuleDocument,
    PermissionSet,
    RoleDocument,
)

__all__ = ["SINGLE_VALUED", "SourcedDocument", "Unchecked", "issues_from_validation_error",
           "single_valued_key", "stored_rule_issues", "validate_documents", "validate_rules",
           "validate_schema"]


@dataclass(slots=True)
class SourcedDocument:
    """A parsed document with where it came from."""

    document: DomainDocument
    file: str | None = None
    positions: Positions = field(default_factory=dict)
    unchecked: Unchecked = field(default_factory=lambda: Unchecked())

    def issue(self, path: Path, message: str, hint: str | None = None, code: str = "SA110") -> PolicyIssue:
        line, column = position_of(self.positions, path)
        return PolicyIssue(message, self.file, line, column, hint, code)


def issues_from_validation_error(
    error: ValidationError, file: str | None, positions: Positions, model: type[BaseModel] | None = None,
    reference: str | None = None,
) -> list[PolicyIssue]:
    """pydantic errors as located policy issues (one per offending value), worded in the
    document's terms: no pydantic class names, union branches or "Input should be" phrasing.
    ``model`` is the model validated (it names the keys an unknown key could have meant);
    ``reference`` the documentation page a hint about the expected shape points at."""
    return [found.issue(file) for found in _schema_errors(error, positions, model, reference)]


@dataclass(frozen=True, slots=True)
class _SchemaError:
    path: Path  # in the document's own keys
    is_key: bool  # the mapping key itself is refused (not its value)
    type: str
    message: str
    hint: str | None
    position: tuple[int | None, int | None]

    def issue(self, file: str | None) -> PolicyIssue:
        return PolicyIssue(self.message, file, *self.position, self.hint, "SA102")


_TYPE_ERRORS = frozenset({"literal_error", "model_type", "dict_type", "list_type", "string_type",
                          "int_type", "bool_type", "datetime_type", "model_attributes_type"})


def _schema_errors(error: ValidationError, positions: Positions, model: type[BaseModel] | None,
                   reference: str | None) -> list[_SchemaError]:
    items = []
    for item in error.errors():
        path, branch, is_key = _clean_location(model, tuple(item["loc"]))
        items.append((path, branch, is_key, item))
    # A value a union refused: each branch says why. When one branch got deeper (the value had
    # its shape: `{custom: []}` for a scope), the others' "not this type" is noise; otherwise
    # the branches' expectations are one message ("'visible', 'readonly' or 'hidden', or a
    # mapping").
    deeper = {path[:n] for path, _, _, _ in items for n in range(len(path))}
    by_path: dict[tuple[Path, bool], list[tuple[type[Any] | None, dict[str, Any]]]] = {}
    for path, branch, is_key, item in items:
        if item["type"] in _TYPE_ERRORS and path in deeper:
            continue
        by_path.setdefault((path, is_key), []).append((branch, dict(item)))
    odd_keys: dict[tuple[object, ...], object] | None = None  # built at the first use
    found: list[_SchemaError] = []
    for (path, is_key), branches in by_path.items():
        if odd_keys is None:
            odd_keys = _odd_keys(positions)
        keyed: Path = _keyed(path, odd_keys) if odd_keys else path
        message, hint = _wording(keyed, branches, model, reference)
        if odd_keys and keyed and (isinstance(keyed[-1], bool) or keyed[-1] is None):
            hint = "YAML reads yes/no/on/off/true/false as booleans and ~ or null as nothing: " \
                   "quote a name that is one of these words ('no')"
        # repr() for a part that would not print as itself (a newline, a lone surrogate …).
        where = ".".join(str(p) if str(p).isprintable() and str(p) else repr(p) for p in keyed) or "document"
        found.append(_SchemaError(keyed, is_key, branches[0][1]["type"], f"{where}: {message}", hint,
                                  position_of(positions, keyed)))
    return found


def _clean_location(model: type[BaseModel] | None, loc: tuple[Any, ...],
                    ) -> tuple[Path, type[Any] | None, bool]:
    """pydantic's error location as a path of the document's keys — union branch tags
    (``literal['own',…]``, ``CustomScope``) and the ``[key]`` marker of a refused mapping key
    dropped — with the type expected at the end (``None`` where unknown) and whether the key
    itself was refused. Walks the model's types, so a name that happens to look like a tag (an
    account called ``CustomScope``) stays a name."""
    path: list[Any] = []
    current: Any = model
    is_key = False
    for part in loc:
        if part == "[key]" and path:
            is_key = True
            continue
        current = _strip(current)
        arms = _union_arms(current)
        if arms is not None:  # a union: this part is the branch's tag
            current = _branch(arms, part)
            continue
        if current is None and isinstance(part, str) and ("[" in part or part in _MODEL_NAMES):
            continue  # no model to walk: the old heuristic
        path.append(part)
        current = _step(current, part)
    return tuple(path), _strip(current), is_key


def _strip(annotation: Any) -> Any:
    """``Annotated[X, …]`` → ``X``; ``X | None`` → ``X``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    arms = _union_arms(annotation, optional=True)
    if arms is not None and len(arms) == 1:
        return _strip(arms[0])
    return annotation


def _union_arms(annotation: Any, *, optional: bool = False) -> list[Any] | None:
    """The non-None arms of a union (of two or more, unless ``optional``), else ``None``."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    arms = [a for a in get_args(annotation) if a is not type(None)]
    return arms if optional or len(arms) > 1 else None


def _branch(arms: list[Any], tag: object) -> Any:
    for arm in arms:
        plain = _strip(arm)
        if isinstance(plain, type) and issubclass(plain, BaseModel) and plain.__name__ == tag:
            return plain
    kind = str(tag).split("[", 1)[0]
    for arm in arms:
        plain = _strip(arm)
        if (kind == "literal" and get_origin(plain) is Literal) or (
                kind in ("list", "dict") and getattr(get_origin(plain), "__name__", None) == kind):
            return plain
    return None


def _step(annotation: Any, part: object) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None  # an extra key (a permission set's resource type)
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    return None


_MODEL_NAMES = frozenset({"CustomScope", "FieldRuleDocument"})

def _kind(value: object) -> str:
    kind = value_kind(value)
    if kind in ("text", "a number"):
        return f"{'text' if kind == 'text' else 'the number'} {shown(value)}"
    return kind


def _wording(path: Path, branches: list[tuple[type[Any] | None, dict[str, Any]]],
             model: type[BaseModel] | None, reference: str | None) -> tuple[str, str | None]:
    """The message and hint for the error(s) about one value."""
    shape_hint = "see " + (reference or docs_url("policy-reference")) + " for the expected shape"
    first = branches[0][1]
    kind, value, context = first["type"], first.get("input"), first.get("ctx") or {}
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        allowed = _keys_of(model, path[:-1])
        close = did_you_mean(str(key), allowed) if allowed else None
        hint = close or ("keys allowed here: " + ", ".join(allowed) if allowed else
                         "check the spelling; " + (reference or docs_url("policy-reference"))
                         + " lists every key")
        return f"unknown key {key!r}", hint
    if kind == "missing":
        return (f"the required key {path[-1]!r} is missing" if path else "a required key is missing",
                f"add `{path[-1]}:`" if path else None)
    if kind.startswith("value_error") or first["msg"].startswith("Value error, "):
        return first["msg"].removeprefix("Value error, "), None
    expected = [_expected(branch, item) for branch, item in branches]
    if all(e is not None for e in expected):
        words = [e for e in expected if e is not None]
        text = ", or ".join(words) if len(words) > 1 else words[0]
        literal = next((item.get("ctx", {}).get("expected") for _, item in branches
                        if item["type"] == "literal_error"), None)
        suggestion: str | None = None
        if literal is not None and isinstance(value, str):
            suggestion = did_you_mean(value, re.findall(r"'([^']*)'", str(literal)))
        if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
            suggestion = f"quote it if it is a name: '{value}'"
        return f"expected {text}, not {_kind(value)}", suggestion or (None if literal else shape_hint)
    if kind == "string_too_short":
        return "a name cannot be empty", None
    if kind == "string_too_long":
        return f"longer than the limit of {int(context.get('max_length', 0)):,} characters", None
    if kind == "too_short":
        return "the list is empty: name at least one", None
    if kind.startswith(("datetime", "date")):
        return (f"{shown(value)} is not a date or time",
                "dates are ISO-8601, e.g. 2026-12-31 or 2026-12-31T18:00:00Z")
    # Anything else: pydantic's sentence, without its class names.
    return re.sub(r" or instance of \w+", "", first["msg"]), None


def _expected(branch: type[Any] | None, item: dict[str, Any]) -> str | None:
    """What one branch expected, in words (``None``: not a plain type mismatch)."""
    kind = item["type"]
    if kind == "literal_error":
        return str((item.get("ctx") or {}).get("expected", "one of the listed words"))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if isinstance(branch, type) and issubclass(branch, BaseModel):
            keys = ", ".join(f"{k}: …" for k in _field_names(branch)[:3])
            return f"a mapping ({{{keys}}})"
        return "a mapping (key: value)"
    return {"list_type": "a list ([a, b])", "string_type": "text", "int_type": "a whole number",
            "bool_type": "true or false", "datetime_type": "a date or time"}.get(kind)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _keys_of(model: type[BaseModel] | None, path: Path) -> list[str]:
    """The keys the model allows in the mapping at ``path`` (empty when unknown)."""
    current: Any = model
    for part in path:
        current = _strip(current)
        arms = _union_arms(current)
        if arms is not None:
            current = next((a for a in arms if isinstance(_strip(a), type)
                            and issubclass(_strip(a), BaseModel)), None)
        current = _step(_strip(current), part)
    current = _strip(current)
    arms = _union_arms(current)
    if arms is not None:
        current = next((_strip(a) for a in arms if isinstance(_strip(a), type)
                        and issubclass(_strip(a), BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return _field_names(current)
    return []


def _odd_keys(positions: Positions) -> dict[tuple[object, ...], object]:
    """The document's mapping keys that are neither text nor numbers (``~``, ``no``, a date),
    indexed as pydantic writes them in an error's location: bools as 0 or 1, the others by
    repr, after their parent's path."""
    found: dict[tuple[object, ...], object] = {}
    for path in positions:
        if path and (isinstance(path[-1], bool) or not isinstance(path[-1], str | int)):
            key: object = path[-1]
            found[(path[:-1], int(key) if isinstance(key, bool) else repr(key))] = key
    return found


def _keyed(path: Path, odd_keys: dict[tuple[object, ...], object]) -> Any:
    """``path`` with each part pydantic rewrote replaced by the document's own key."""
    keyed: tuple[object, ...] = ()
    for part in path:
        keyed = (*keyed, odd_keys.get((keyed, part), part))
    return keyed


# -- a document whose schema failed, checked as far as it can be --------------------------


@dataclass(slots=True)
class Unchecked:
    """The parts of a document that failed their schema, so that the cross-reference checks
    depending on them are skipped (their problem is already reported) while the rest of the
    document is still checked in the same run."""

    domain: bool = False  # the domain name itself (a placeholder stands in)
    sections: set[str] = field(default_factory=set)  # departments / roles / accounts, as a whole
    types: set[str] | None = field(default_factory=set)  # resource types of unknown actions (None: all)
    field_types: set[str] | None = field(default_factory=set)  # types of unknown fields (None: all)

    def fields_known(self, typ: str) -> bool:
        return self.field_types is not None and typ not in self.field_types


_REPAIR_ROUNDS = 8
_ENTITY_SECTIONS = ("departments", "roles", "accounts")


def validate_schema(data: dict[Any, Any], file: str | None, positions: Positions,
                    damaged: Collection[Path] = ()) -> tuple[SourcedDocument | None, list[PolicyIssue]]:
    """Schema-check one document: every schema error, and — even when there are some — the
    document with each failing part neutralised (an unknown key dropped, a malformed account
    emptied, a malformed resource type's actions left unchecked), for the cross-reference checks
    of the rest (:func:`validate_documents` skips what depends on the neutralised parts, as
    :class:`Unchecked` records). ``damaged`` are paths whose value the YAML reader already
    refused (their schema error would say it twice). ``None`` when nothing can be salvaged."""
    issues: list[PolicyIssue] = []
    unchecked = Unchecked()
    reported: set[Path] = set()
    repaired: list[Path] = []
    work: dict[Any, Any] = data
    for _ in range(_REPAIR_ROUNDS):
        try:
            document = DomainDocument.model_validate(work)
        except ValidationError as exc:
            errors = _schema_errors(exc, positions, DomainDocument, None)
        else:
            return SourcedDocument(document, file, positions, unchecked), issues
        changed = False
        for error in errors:  # all reported before any repair: a repair covers later rounds only
            if error.path not in reported and not any(_within(error.path, p) for p in (*damaged, *repaired)):
                reported.add(error.path)
                issues.append(error.issue(file))
        for error in errors:
            target = _neutralise(work, error, unchecked, file)
            if target is not None:
                work, target_path = target
                repaired.append(target_path)
                changed = True
        if not changed:
            break
    return None, issues


def _within(path: Path, ancestor: Path) -> bool:
    return path[:len(ancestor)] == ancestor


def _neutralise(work: dict[Any, Any], error: _SchemaError, unchecked: Unchecked,
                file: str | None) -> tuple[dict[Any, Any], Path] | None:
    """``work`` with the part ``error`` is about neutralised (a copy; YAML aliases may share the
    original's lists and mappings), and the path changed; ``None`` if nothing could be."""
    path = error.path
    if not path:
        return None
    head = path[0]
    if head == "domain":
        unchecked.domain = True
        return _edit(work, ("domain",), f"<no valid domain name in {file or id(work)}>")
    if head in _ENTITY_SECTIONS:
        if len(path) == 1:
            unchecked.sections.add(str(head))
            return _edit(work, path[:1], _DROP)
        if len(path) == 2 or error.is_key:
            # The entity stays (as an empty one), so references to it still resolve.
            return _edit(work, path[:2], _DROP if error.is_key else None)
        return _edit(work, path[:3], _DROP)  # one key of the entity: the others are checked
    if head == "resources":
        if len(path) == 1 or error.is_key:
            unchecked.types = None
            return _edit(work, path[:2], _DROP)
        if unchecked.types is not None:
            unchecked.types.add(str(path[1]))
        return _edit(work, path[:2], [])
    if head == "fields":
        if len(path) == 1 or error.is_key:
            unchecked.field_types = None
        elif unchecked.field_types is not None:
            unchecked.field_types.add(str(path[1]))
        return _edit(work, path[:2], _DROP)
    return _edit(work, path[:1], _DROP)  # description, or an unknown top-level key


_DROP: Any = object()


def _edit(root: dict[Any, Any], path: Path, value: Any) -> tuple[dict[Any, Any], Path] | None:
    """A copy of ``root`` with the mapping entry at ``path`` set to ``value`` (or dropped):
    the mappings along the path are copied, the rest shared."""
    top = dict(root)
    node = top
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return None
        node[part] = child = dict(child)
        node = child
    last = path[-1]
    if value is _DROP:
        if last not in node:
            return None
        del node[last]
    elif node.get(last, _DROP) == value:
        return None
    else:
        node[last] = value
    return top, path


def validate_documents(documents: Sequence[SourcedDocument]) -> list[PolicyIssue]:
    """Every semantic problem across the documents (empty when they are sound)."""
    issues: list[PolicyIssue] = []
    seen_domains: dict[str, SourcedDocument] = {}
    for sourced in documents:
        name = sourced.document.domain
        if name in seen_domains and not sourced.unchecked.domain:
            first = seen_domains[name].file or "<rules>"
            issues.append(sourced.issue(("domain",), f"domain {name!r} is already defined in {first}",
                                        "put each domain in exactly one file", "SA111"))
            continue
        seen_domains[name] = sourced
        issues.extend(_validate_domain(sourced, {d.document.domain: d for d in documents}))
    return issues


def _validate_domain(src: SourcedDocument, all_domains: dict[str, SourcedDocument]) -> list[PolicyIssue]:
    doc = src.document
    skip = src.unchecked
    issues: list[PolicyIssue] = []
    add = issues.append
    known_departments = "departments" not in skip.sections
    known_roles = "roles" not in skip.sections

    def unknown(name: str, section: str, candidates: Iterable[str], default: str | None = None) -> str | None:
        return _elsewhere(name, section, all_domains, doc.domain) or did_you_mean(name, candidates) or default

    if doc.domain == R.WILDCARD:
        add(src.issue(("domain",), "'*' is not a valid domain name", code="SA112"))

    # Vocabulary.
    vocabulary: dict[str, set[str]] = {t: set(a) for t, a in R.BUILTIN_VOCABULARY.items()}
    for typ, actions in doc.resources.items():
        if typ in R.BUILTIN_VOCABULARY:
            add(src.issue(("resources", typ), f"resource type {typ!r} is built in and cannot be redeclared",
                          "remove it from resources; account:manage and role:escalate always exist",
                          "SA112"))
            continue
        if typ in (R.WILDCARD, "scope", "expires"):
            add(src.issue(("resources", typ), f"{typ!r} is reserved and cannot name a resource type",
                          code="SA112"))
        for i, action in enumerate(actions):
            if action == R.WILDCARD:
                add(src.issue(("resources", typ, i), "'*' is a wildcard, not an action",
                              "list the real actions; permissions may then use '*'", "SA112"))
        if len(set(actions)) != len(actions):
            add(src.issue(("resources", typ), f"resource type {typ!r} lists an action twice", code="SA103"))
        vocabulary[typ] = set(actions)

    for typ in doc.fields:
        if typ not in vocabulary and skip.types is not None:
            add(src.issue(("fields", typ), f"fields declared for unknown resource type {typ!r}",
                          "declare the type under `resources` first", "SA160"))

    # Departments: references and cycles.
    departments = doc.departments
    for name, dept in departments.items():
        parent = dept.parent if dept is not None else None
        if parent is not None and parent not in departments:
            add(src.issue(("departments", name, "parent"),
                          f"department {name!r} names unknown parent department {parent!r}",
                          unknown(parent, "departments", departments), "SA120"))
    for cycle_start in _cycles({n: [d.parent] if d is not None and d.parent else []
                                for n, d in departments.items()}):
        add(src.issue(("departments", cycle_start),
                      f"the department tree has a cycle through {cycle_start!r}",
                      "a department cannot be below itself; fix the parent chain", "SA121"))

    if doc.time_zone is not None:
        try:
            C.time_zone(doc.time_zone)
        except ValueError as exc:
            add(src.issue(("time_zone",), str(exc), None, "SA174"))

    # Roles.
    references: list[_AccountReference] = []  # account.<name> operands, checked with the accounts
    roles = doc.roles
    overlap = set(roles) & set(doc.accounts)
    for name in sorted(overlap):
        add(src.issue(("accounts", name), f"{name!r} is both a role and an account",
                      "roles and accounts share one namespace per domain; rename one", "SA113"))
    for name, role in roles.items():
        role = role or RoleDocument()
        for i, inherited in enumerate(role.inherits):
            if inherited not in roles:
                add(src.issue(("roles", name, "inherits", i),
                              f"role {name!r} inherits unknown role {inherited!r}",
                              unknown(inherited, "roles", roles), "SA130"))
        for i, pset in enumerate(role.permissions):
            issues.extend(_validate_permission_set(src, ("roles", name, "permissions", i), pset,
                                                   vocabulary, departments, grant=False,
                                                   references=references))
        for typ, specs in role.fields.items():
            if typ not in vocabulary and skip.types is not None:
                add(src.issue(("roles", name, "fields", typ),
                              f"field rules name unknown resource type {typ!r}",
                              "declare it under `resources`", "SA160"))
                continue
            declared = doc.fields.get(typ) if skip.fields_known(typ) else None
            for field_name, spec in specs.items():
                if declared is not None and field_name not in declared:
                    add(src.issue(("roles", name, "fields", typ, field_name),
                                  f"unknown field {field_name!r} of {typ!r}",
                                  did_you_mean(field_name, declared)
                                  or f"declared fields: {', '.join(declared)}",
                                  "SA161"))
                if isinstance(spec, FieldRuleDocument) and isinstance(spec.scope, CustomScope):
                    for dept_name in spec.scope.custom:
                        if dept_name not in departments and known_departments:
                            add(src.issue(("roles", name, "fields", typ, field_name, "scope"),
                                          f"custom scope names unknown department {dept_name!r}",
                                          unknown(dept_name, "departments", departments,
                                                  "list departments defined under `departments`"),
                                          "SA120"))
    for cycle_start in _cycles({n: list((r or RoleDocument()).inherits) for n, r in roles.items()}):
        add(src.issue(("roles", cycle_start),
                      f"role inheritance has a cycle through {cycle_start!r}",
                      "a role cannot inherit itself, directly or through other roles", "SA131"))

    # Accounts.
    accounts = doc.accounts
    for name, account in accounts.items():
        account = account or AccountDocument()
        if account.department is not None and account.department not in departments \
                and known_departments:
            add(src.issue(("accounts", name, "department"),
                          f"account {name!r} is in unknown department {account.department!r}",
                          unknown(account.department, "departments", departments), "SA120"))
        role_names = account.role_names
        for i, role_name in enumerate(role_names):
            if role_name not in roles and known_roles:
                add(src.issue(("accounts", name, "roles", i),
                              f"account {name!r} is assigned unknown role {role_name!r}",
                              unknown(role_name, "roles", roles), "SA130"))
        if len(set(role_names)) != len(role_names):
            add(src.issue(("accounts", name, "roles"), f"account {name!r} lists a role twice",
                          "assign each role once (with or without an expiry)", "SA103"))
        for i, auxiliary in enumerate(account.also_in):
            if auxiliary not in departments and known_departments:
                add(src.issue(("accounts", name, "also_in", i),
                              f"account {name!r} is also in unknown department {auxiliary!r}",
                              unknown(auxiliary, "departments", departments), "SA120"))
        if len(set(account.also_in)) != len(account.also_in):
            add(src.issue(("accounts", name, "also_in"),
                          f"account {name!r} lists an auxiliary department twice", code="SA103"))
        if account.reports_to is not None:
            if account.reports_to == name:
                add(src.issue(("accounts", name, "reports_to"),
                              f"account {name!r} cannot report to itself", code="SA143"))
            elif account.reports_to not in accounts:
                add(src.issue(("accounts", name, "reports_to"),
                              f"account {name!r} reports to unknown account {account.reports_to!r}",
                              unknown(account.reports_to, "accounts", accounts), "SA142"))
        if account.parent is not None:
            if account.parent == name:
                add(src.issue(("accounts", name, "parent"), f"account {name!r} cannot be its own parent",
                              code="SA141"))
            elif account.parent not in accounts:
                add(src.issue(("accounts", name, "parent"),
                              f"sub-account {name!r} names unknown parent account {account.parent!r}",
                              unknown(account.parent, "accounts", accounts), "SA140"))
        for i, pset in enumerate(account.grants):
            issues.extend(_validate_permission_set(src, ("accounts", name, "grants", i), pset,
                                                   vocabulary, departments, grant=True,
                                                   references=references))
        for attribute, value in account.attributes.items():
            problem = C.value_problem(value)
            if problem is not None:
                add(src.issue(("accounts", name, "attributes", attribute),
                              f"account {name!r}: attribute {attribute!r}: {problem}",
                              "write text, a number, a boolean or a list of them", "SA171"))
    for cycle_start in _cycles({n: [a.parent] if a is not None and a.parent else []
                                for n, a in accounts.items()}):
        if (accounts[cycle_start] or AccountDocument()).parent != cycle_start:
            add(src.issue(("accounts", cycle_start, "parent"),
                          f"the sub-account chain has a cycle through {cycle_start!r}",
                          "an account cannot be below itself; fix the parent chain", "SA141"))
    for cycle_start in _cycles({n: [a.reports_to] if a is not None and a.reports_to else []
                                for n, a in accounts.items()}):
        if (accounts[cycle_start] or AccountDocument()).reports_to != cycle_start:
            add(src.issue(("accounts", cycle_start, "reports_to"),
                          f"the reporting line has a cycle through {cycle_start!r}",
                          "an account cannot report to itself, directly or through others",
                          "SA143"))

    for name, dept in departments.items():
        for i, pset in enumerate(dept.grants if dept is not None else ()):
            issues.extend(_validate_permission_set(src, ("departments", name, "grants", i), pset,
                                                   vocabulary, departments, grant=True,
                                                   references=references))
    issues.extend(_account_reference_issues(src, references, accounts))

    # Share levels.
    for typ, levels in doc.sharing.items():
        known = vocabulary.get(typ)
        if known is None:
            if skip.types is not None:
                add(src.issue(("sharing", typ), f"share levels for unknown resource type {typ!r}",
                              unknown(typ, "resources", vocabulary,
                                      "declare the type under `resources` first"), "SA162"))
            continue
        for level, actions in levels.items():
            for i, action in enumerate(actions):
                if action not in known and action != R.WILDCARD and skip.types is not None:
                    add(src.issue(("sharing", typ, level, i),
                                  f"share level {level!r} of {typ!r} names unknown action {action!r}",
                                  did_you_mean(action, known)
                                  or f"known actions: {', '.join(sorted(known))}", "SA162"))
                if action == R.WILDCARD:
                    add(src.issue(("sharing", typ, level, i),
                                  "'*' is not allowed in a share level",
                                  "list the actions a share at this level allows", "SA162"))
            if not actions:
                add(src.issue(("sharing", typ, level), f"share level {level!r} of {typ!r} allows "
                              "no action", "list at least one action, e.g. [read]", "SA162"))
    return issues


def _validate_permission_set(src: SourcedDocument, path: Path, pset: PermissionSet,
                             vocabulary: dict[str, set[str]], departments: Mapping[str, object],
                             *, grant: bool, references: list[_AccountReference] | None = None,
                             ) -> list[PolicyIssue]:
    issues = []
    skip = src.unchecked
    if pset.where is not None or pset.requires is not None:
        issues.extend(_condition_issues(src, path, pset, vocabulary, references))
    if not pset.actions:
        issues.append(src.issue(path, "a permission set names no resource type",
                                "add e.g. `customer: [read]` beside the scope", "SA150"))
    if pset.expires is not None and not grant:
        issues.append(src.issue((*path, "expires"), "only direct grants can expire, not role permissions",
                                "move the time-limited permission to the account's grants", "SA151"))
    if isinstance(pset.scope, CustomScope) and "departments" not in skip.sections:
        for i, dept in enumerate(pset.scope.custom):
            if dept not in departments:
                issues.append(src.issue((*path, "scope", "custom", i),
                                        f"custom scope names unknown department {dept!r}",
                                        did_you_mean(dept, departments)
                                        or "list departments defined under `departments`", "SA120"))
    if skip.types is None:  # the vocabulary failed its schema: nothing to check names against
        return issues
    every_action = set().union(*vocabulary.values())
    for typ, actions in pset.actions.items():
        if typ != R.WILDCARD and typ not in vocabulary:
            issues.append(src.issue((*path, typ), f"unknown resource type {typ!r}",
                                    did_you_mean(typ, vocabulary)
                                    or "declare it under `resources`, or use '*'",
                                    "SA152"))
            continue
        if typ in skip.types or (typ == R.WILDCARD and skip.types):
            continue  # its actions are unknown: its declaration failed its schema
        known = every_action if typ == R.WILDCARD else vocabulary[typ]
        for i, action in enumerate(actions):
            if action != R.WILDCARD and action not in known:
                close = did_you_mean(action, known)
                issues.append(src.issue((*path, typ, i), f"unknown action {action!r} for {typ!r}",
                                        (close + " " if close else "")
                                        + f"known actions: {', '.join(sorted(known))}", "SA153"))
    return issues


@dataclass(frozen=True, slots=True)
class _AccountReference:
    """``attribute: {op: account.<name>}`` in a ``where:``: the account attribute ``name`` is
    compared with a record attribute of the ``kinds`` declared."""

    name: str
    op: str
    attribute: str
    kinds: frozenset[str]


_COMPARISONS: Final = ("lt", "le", "gt", "ge")


def _condition_issues(src: SourcedDocument, path: Path, pset: PermissionSet,
                      vocabulary: Mapping[str, set[str]],
                      references: list[_AccountReference] | None) -> list[PolicyIssue]:
    """SA170-SA175: the ``where:`` tests and ``requires:`` requirements of one permission set,
    each problem at its own line."""
    issues: list[PolicyIssue] = []
    add = issues.append
    declared = src.document.resource_attributes
    types = [t for t in pset.actions if t == R.WILDCARD or t in vocabulary]
    concrete = sorted(set(vocabulary) if R.WILDCARD in types
                      else {t for t in types if t != R.WILDCARD})
    vocabulary_known = src.unchecked.types is not None
    for attribute, spec in (pset.where or {}).items():
        here = (*path, "where", attribute)
        kinds: set[str] = set()
        if attribute == C.OWNER:
            kinds = {"str"}
        elif vocabulary_known:
            # Types that declare their attributes are checked (like fields); built-in types and
            # types declaring none are not.
            checked = [t for t in concrete if declared.get(t)]
            lacking = [t for t in checked if attribute not in declared[t]]
            kinds = {declared[t][attribute] for t in checked if attribute in declared[t]}
            if (R.WILDCARD in types and checked and not kinds) or (
                    R.WILDCARD not in types and lacking):
                typ = lacking[0] if lacking else "*"
                known = sorted(declared.get(typ, {})) if typ != "*" else sorted(
                    {a for t in declared.values() for a in t})
                add(src.issue(here, f"unknown attribute {attribute!r} of {typ!r} in where:",
                              did_you_mean(attribute, [*known, C.OWNER]) or (
                                  f"declared attributes: {', '.join(known)}" if known else
                                  f"declare it: resources: {{{typ}: {{actions: [...], "
                                  f"attributes: {{{attribute}: str}}}}}}"), "SA170"))
                continue
        tests: list[tuple[str, Any, Path]]
        if spec is None:
            continue  # `attr: null`: the value is missing
        if isinstance(spec, Mapping):
            if not spec:
                add(src.issue(here, f"where: {attribute} has no test",
                              f"write e.g. {attribute}: {{eq: ...}}; tests: {', '.join(C.OPERATORS)}",
                              "SA172"))
            tests = [(str(op), operand, (*here, op)) for op, operand in spec.items()]
        elif isinstance(spec, list):
            tests = [("in", spec, here)]
        else:
            tests = [("eq", spec, here)]
        for op, operand, at in tests:
            if op not in C.OPERATORS:
                add(src.issue(at, f"unknown operator {op!r} for {attribute!r} in where:",
                              "YAML reads a bare null key as nothing: quote it, {'null': true}"
                              if op == "None" else did_you_mean(op, C.OPERATORS)
                              or f"operators: {', '.join(C.OPERATORS)}", "SA172"))
                continue
            if op == "null":
                if not isinstance(operand, bool):
                    add(src.issue(at, f"where: {attribute}: null takes true or false, not "
                                  f"{_kind(operand)}", code="SA172"))
                continue
            if isinstance(operand, str) and operand.startswith(C.ACCOUNT_PREFIX) \
                    and len(operand) > len(C.ACCOUNT_PREFIX):
                if references is not None:
                    references.append(_AccountReference(operand[len(C.ACCOUNT_PREFIX):], op,
                                                        attribute, frozenset(kinds)))
                continue
            if op == "in" and not isinstance(operand, list):
                add(src.issue(at, f"where: {attribute}: in takes a list or account.<attribute>, "
                              f"not {_kind(operand)}", f"write {attribute}: {{in: [a, b]}}",
                              "SA172"))
                continue
            if op in _COMPARISONS and kinds and kinds <= {"bool"}:
                add(src.issue(at, f"where: {attribute} is a boolean and cannot be compared with "
                              f"{op}", f"use {attribute}: true or {attribute}: false", "SA171"))
                continue
            for i, constant in enumerate(operand if op == "in" else [operand]):
                if isinstance(constant, dict | list) or constant is None or (
                        kinds and not any(C.fits_kind(constant, k) for k in kinds)):
                    want = " or ".join(sorted(kinds)) or "text, a number or a boolean"
                    add(src.issue((*at, i) if op == "in" else at,
                                  f"where: {attribute} is {want}, but is compared with "
                                  f"{_kind(constant)}", _kind_hint(constant, kinds), "SA171"))
    for key, value in (pset.requires or {}).items():
        here = (*path, "requires", key)
        if key not in C.REQUIREMENTS:
            add(src.issue(here, f"unknown context key {key!r} in requires:",
                          did_you_mean(str(key), C.REQUIREMENTS)
                          or f"requirements: {', '.join(C.REQUIREMENTS)}", "SA175"))
        elif key == "mfa":
            if not isinstance(value, bool) and not (isinstance(value, int) and value >= 1):
                add(src.issue(here, f"requires: mfa takes true or an assurance level (1, 2, …), "
                              f"not {_kind(value)}", "write mfa: true", "SA171"))
        elif key == "ip":
            networks = [value] if isinstance(value, str) else value
            if not isinstance(networks, list) or not networks:
                add(src.issue(here, f"requires: ip takes a list of networks, not {_kind(value)}",
                              "write ip: [10.0.0.0/8]", "SA173"))
                continue
            for i, network in enumerate(networks):
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError:
                    add(src.issue(here if isinstance(value, str) else (*here, i),
                                  f"requires: ip: {shown(network)} is not a network",
                                  "write an address or a CIDR block, e.g. 10.0.0.0/8 or "
                                  "2001:db8::/32", "SA173"))
        elif key == "hours":
            if not isinstance(value, str):
                add(src.issue(here, f"requires: hours takes text, not {_kind(value)}",
                              'write hours: "Mon-Fri 08:00-20:00"', "SA174"))
                continue
            try:
                C.parse_hours(value)
            except ValueError as exc:
                add(src.issue(here, f"requires: {exc}",
                              "days are Mon Tue Wed Thu Fri Sat Sun, times HH:MM, start before end",
                              "SA174"))
    return issues


def _kind_hint(constant: object, kinds: Collection[str]) -> str | None:
    if isinstance(constant, str) and kinds and "str" not in kinds \
            and re.fullmatch(r"-?\d+(\.\d+)?", constant):
        return f"write the number unquoted: {constant}"
    if isinstance(constant, int | float) and not isinstance(constant, bool) and "str" in kinds:
        return f"quote it if it is text: '{constant}'"
    return None


def _account_reference_issues(src: SourcedDocument, references: Sequence[_AccountReference],
                              accounts: Mapping[str, AccountDocument | None]) -> list[PolicyIssue]:
    """SA171 for an account attribute whose value can never be compared with the record
    attribute a condition compares it with."""
    issues: list[PolicyIssue] = []
    reported: set[tuple[str, str]] = set()
    for ref in references:
        if not ref.kinds:
            continue
        for name, account in accounts.items():
            if account is None or ref.name not in account.attributes \
                    or (name, ref.name) in reported:
                continue
            value = account.attributes[ref.name]
            if C.value_problem(value) is not None:
                continue  # reported on its own
            bad, item = C.reference_mismatch(value, ref.op, ref.kinds)
            if bad:
                reported.add((name, ref.name))
                want = " or ".join(sorted(ref.kinds))
                issues.append(src.issue(
                    ("accounts", name, "attributes", ref.name),
                    f"account {name!r}: attribute {ref.name!r} is compared with {ref.attribute} "
                    f"({want}){' by ' + ref.op if ref.op != 'eq' else ''}, but holds "
                    f"{_kind(item)}",
                    "a list only makes sense with in:" if isinstance(value, list)
                    and ref.op != "in" else None, "SA171"))
    return issues


def _elsewhere(name: str, section: str, domains: dict[str, SourcedDocument], here: str) -> str | None:
    for domain, other in domains.items():
        if domain != here and not other.unchecked.domain and name in getattr(other.document, section):
            return f"{name!r} exists in domain {domain!r}, but nothing crosses domains"
    return None


def _cycles(edges: dict[str, list[str]]) -> list[str]:
    """One representative node (the smallest) per cycle in a directed graph."""
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    found: list[str] = []
    for start in sorted(edges):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(edges.get(start, [])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if child not in edges:
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child):]
                found.append(min(cycle))
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(edges.get(child, []))))
                path.append(child)
    return sorted(set(found))


def validate_rules(rules: Sequence[Rule]) -> None:
    """Raise :class:`PolicyError` if a rule set (e.g. read from a store) is malformed or
    inconsistent; the problems name the offending rules."""
    from .compile import decompile_rules

    issues = stored_rule_issues(rules)
    if issues:
        raise PolicyError(issues)
    registered = {(r[1], r[2]) for r in rules if r[0] == R.ACCOUNT}
    roles = {(r[1], r[2]) for r in rules if r[0] == R.ROLE}
    for rule in rules:
        if rule[0] == R.FIELD_RULE and (rule[1], R.domain_of(rule)) not in roles:
            issues.append(PolicyIssue(f"{rule!r}: field rules belong to roles, and {rule[1]!r} is "
                                      "not a role (a 'p4' rule)", code="SA114"))
        if rule[0] in (R.MEMBERSHIP, R.PARENT, R.ROLE_LINK, R.PERMISSION, R.AUXILIARY,
                       R.REPORTS_TO, R.TIMED_ROLE):
            subject = (rule[1], R.domain_of(rule))
            if subject not in registered and subject not in roles:
                issues.append(PolicyIssue(
                    f"{rule!r} names {rule[1]!r}, which is neither a registered account "
                    "(a 'p3' rule) nor a role (a 'p4' rule)", code="SA114"))
    if issues:
        raise PolicyError(issues)
    try:
        documents = decompile_rules(rules)
    except ValidationError as exc:
        raise PolicyError(issues_from_validation_error(exc, None, {})) from None
    problems = validate_documents([SourcedDocument(d) for d in documents])
    if problems:
        raise PolicyError(problems)


SINGLE_VALUED: Final[dict[str, str]] = {R.ACCOUNT: "status", R.MEMBERSHIP: "department",
                                        R.PARENT: "parent account",
                                        R.REPORTS_TO: "reporting superior"}
"""The rule types that state a single-valued fact of an account: at most one rule of each type
per account and domain (its status, its main department, its parent account, its superior)."""


# Rule types whose values check_rule only requires to be non-empty text without NUL or lone
# surrogates (and, for p3, a known status): what the fast screen of stored_rule_issues accepts.
_PLAIN_WIDTH: Final[dict[str, int]] = {
    ptype: 1 + R.ARITY[ptype]
    for ptype in (R.VOCABULARY, R.ACCOUNT, R.ROLE, R.ROLE_LINK, R.DEPARTMENT, R.MEMBERSHIP, R.PARENT, R.FIELD)
}


_FACT_DOMAIN: Final[dict[str, int]] = {ptype: 1 + R.DOMAIN_FIELD[ptype] for ptype in SINGLE_VALUED}


def single_valued_key(rule: Rule) -> tuple[str, str, str] | None:
    """``(ptype, domain, account)`` for a rule stating a single-valued fact, else ``None``."""
    if rule[0] not in SINGLE_VALUED:
        return None
    return rule[0], rule[1 + R.DOMAIN_FIELD[rule[0]]], rule[1]


def stored_rule_issues(rules: Iterable[Rule], source: str | None = None) -> list[PolicyIssue]:
    """Every invariant that rules held in a store must keep, broken by ``rules`` — one domain's
    rules as loaded, or the rules a write would leave for the accounts it touches. Empty when
    they keep them all. Each issue names the offending rules (and ``source``, the store):

    * **SA100** a malformed rule (:func:`salesauthz._rules.check_rule`) — among them a stored
      row with a ``NULL`` (missing) value, e.g. a ``p`` row written by a Casbin adapter without
      the expiry (``""`` means "never expires"; a missing value is not that);
    * **SA115** a single-valued fact stated twice: two statuses (``p3``), two departments
      (``g3``) or two parent accounts (``g4``) for one account of one domain. Which one holds
      is unknowable, so neither may be used ("last row wins" could bring back an account an
      administrator deactivated).

    The load path of the :class:`~salesauthz.Authorizer` refuses a domain with any of these (it
    stays closed: every check there denies) and every store's write path refuses a change that
    would create one.
    """
    issues: list[PolicyIssue] = []
    first: dict[tuple[str, str, str], Rule] = {}  # each single-valued fact -> its first rule
    doubled: dict[tuple[str, str, str], set[Rule]] = {}
    rules = rules if isinstance(rules, list) else list(rules)
    try:  # the text of every rule screened at once: plain ASCII without NUL (the usual case)
        text = "".join(chain.from_iterable(rules))
        plain_text = text.isascii() and "\x00" not in text
    except TypeError:  # a value that is not text (NULL): each rule is screened on its own
        plain_text = False
    for rule in rules:
        # The common shapes are screened with a few C-level tests (a load reads millions of
        # rules); anything else gets the full check.
        ptype = rule[0] if type(rule) is tuple and rule else None
        if ptype in _PLAIN_WIDTH and len(rule) == _PLAIN_WIDTH[ptype] and None not in rule \
                and "" not in rule and (ptype != R.ACCOUNT or rule[3] in R.STATUSES):
            if plain_text:
                problem = None
            else:
                joined = "".join(rule)
                problem = None if joined.isascii() and "\x00" not in joined else R.check_rule(rule)
        else:
            problem = R.check_rule(rule)
        if problem is not None:
            hint = None
            if isinstance(rule, tuple) and None in rule:
                problem = f"a stored value is missing (NULL): {problem}"
                if rule[:1] == (R.PERMISSION,) and len(rule) == 1 + R.ARITY[R.PERMISSION] \
                        and rule[-1] is None and None not in rule[:-1]:
                    hint = ("a 'p' rule has six values; write the expiry as '' (never expires) "
                            "instead of leaving it out")
            issues.append(PolicyIssue(f"{problem}: {rule!r}", source, code="SA100", hint=hint))
            continue
        position = _FACT_DOMAIN.get(rule[0])
        if position is not None:
            key = (rule[0], rule[position], rule[1])
            held = first.setdefault(key, rule)
            if held != rule:
                doubled.setdefault(key, {held}).add(rule)
    for (ptype, domain, account), stated in doubled.items():
        distinct = sorted(stated)
        issues.append(PolicyIssue(
            f"account {account!r} of domain {domain!r} has {len(distinct)} {SINGLE_VALUED[ptype]} "
            f"rules, and may have only one: {', '.join(repr(r) for r in distinct)}", source,
            code="SA115", hint="remove all but one of them (in one change)"))
    return issues

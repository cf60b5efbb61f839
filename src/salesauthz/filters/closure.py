"""A department closure table: large department subtrees in list filters by their tops.

A manager at the root of a 2,000-department tree may see every department; rendered inline, the
filter binds 2,000 names (``department IN (%s, …)``) or one 2,000-element array. With a closure
table — one row per (ancestor, descendant) pair of the department tree, each department its own
ancestor too — the renderers name only the *tops* of the subtrees the filter covers::

    department = ANY(ARRAY(SELECT salesauthz_closure.descendant
                           FROM department_closure salesauthz_closure
                           WHERE salesauthz_closure.tenant = %s
                             AND salesauthz_closure.version = %s
                             AND salesauthz_closure.ancestor = %s))

(``department IN (SELECT …)`` without ``arrays=True``): parameters in proportion to the number
of tops, not to the subtrees' size.

**The rows are versioned by the tree they describe.** :func:`tree_version` is a digest of the
domain's whole department tree (:meth:`Authorizer.department_parents
<salesauthz.Authorizer.department_parents>`); :func:`sync` writes the rows of the current tree
under that version, and a renderer asks for the rows of the version of the tree it rendered
with. Rows of a version are the closure of exactly that tree, so the table can never make a
filter show a record ``check`` denies: when it was not synced after a department change, the
rows asked for are missing and the subtrees they stand for show *nothing* (fail closed) until
:func:`sync` runs. Sync after every change to departments (and at start-up); :func:`is_synced`
tells whether the table holds the current tree.

    >>> CLOSURE = ClosureTable("crm.department_closure")
    >>> for statement in CLOSURE.ddl():
    ...     cursor.execute(statement)
    >>> sync(conn, CLOSURE, authz, domain="acme")      # then commit
    >>> where, params = sql_where(flt, owner="owner", department="department", arrays=True,
    ...                           closure=CLOSURE.using(authz))

Only subtrees of at least ``min_subtree`` departments go through the table; smaller ones, and
departments whose subtree the filter covers only in part (a ``department`` scope without its
children), stay inline, so a team lead's filter is ``department = %s`` as before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from salesauthz._identity import IdentityCache

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer

__all__ = ["Closure", "ClosureTable", "DepartmentTree", "is_synced", "rows", "sync",
           "tree_of", "tree_version"]

CLOSURE_ALIAS = "salesauthz_closure"

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"\x00]|"")+"'
_PART = re.compile(rf"{_PLAIN}|{_QUOTED}")
_NAME = re.compile(rf"(?:{_PLAIN}|{_QUOTED})(?:\.(?:{_PLAIN}|{_QUOTED}))*")


@dataclass(frozen=True, slots=True)
class ClosureTable:
    """Where the department closure table lives: ``name`` as in ``FROM`` (``dept_closure``,
    ``crm.dept_closure``), its four columns (plain or double-quoted names), and the smallest
    subtree worth a lookup in it (``min_subtree`` departments; smaller subtrees stay inline)."""

    name: str = "salesauthz_department_closure"
    tenant: str = "tenant"
    version: str = "version"
    ancestor: str = "ancestor"
    descendant: str = "descendant"
    min_subtree: int = 11

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"closure table name {self.name!r} is not a SQL identifier: use a "
                             "plain or dotted name such as 'crm.dept_closure'")
        for role in ("tenant", "version", "ancestor", "descendant"):
            column = getattr(self, role)
            if not isinstance(column, str) or not _PART.fullmatch(column):
                raise ValueError(f"closure {role} column {column!r} is not a SQL identifier: give "
                                 "one plain name (not dotted), or a double-quoted one")
        if not isinstance(self.min_subtree, int) or self.min_subtree < 1:
            raise ValueError(f"min_subtree must be a positive int, got {self.min_subtree!r}")

    def ddl(self) -> list[str]:
        """``CREATE TABLE IF NOT EXISTS`` for the table (PostgreSQL, SQLite and most others).
        Its primary key ``(tenant, version, ancestor, descendant)`` serves the lookup alone (an
        index-only scan in PostgreSQL)."""
        return [
            f"CREATE TABLE IF NOT EXISTS {self.name} ({self.tenant} TEXT NOT NULL, "
            f"{self.version} TEXT NOT NULL, {self.ancestor} TEXT NOT NULL, "
            f"{self.descendant} TEXT NOT NULL, PRIMARY KEY ({self.tenant}, {self.version}, "
            f"{self.ancestor}, {self.descendant}))"
        ]

    def using(self, authz: Authorizer) -> Closure:
        """This table with the authorizer whose department tree the renderers split filters by
        (``closure=`` of :func:`~salesauthz.filters.sql.sql_where`, ``scope_clause``,
        ``scope_q``)."""
        return Closure(self, authz)


@dataclass(frozen=True, slots=True)
class Closure:
    """A :class:`ClosureTable` and the :class:`~salesauthz.Authorizer` that knows the tree."""

    table: ClosureTable
    authz: Authorizer

    def tree(self, domain: str) -> DepartmentTree:
        return tree_of(self.authz, domain)


@dataclass(frozen=True, slots=True, eq=False)
class DepartmentTree:
    """One version of a domain's department tree: ``below[d]`` is ``d`` and every department
    under it (exactly the rows :func:`sync` writes with ``d`` as the ancestor)."""

    version: str
    below: Mapping[str, frozenset[str]]

    def split(self, departments: tuple[str, ...], min_subtree: int
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(tops, rest)``: the union of ``below[t]`` for the tops, plus ``rest``, is exactly
        ``departments``; each top's subtree has at least ``min_subtree`` departments and lies
        wholly inside ``departments``, and no top is under another."""
        cached = _splits.get(self, departments)
        if cached is not None and cached[0] == min_subtree:
            return cached[1], cached[2]
        wanted = frozenset(departments)
        below = self.below
        full = {d for d in wanted if d in below and below[d] <= wanted}
        covered: set[str] = set()
        tops: list[str] = []
        # Largest subtrees first: a department under an earlier top is already covered.
        for top in sorted(full, key=lambda d: (-len(below[d]), d)):
            if top in covered or len(below[top]) < min_subtree:
                continue
            tops.append(top)
            covered.update(below[top])
        rest = tuple(d for d in departments if d not in covered)
        result = (tuple(sorted(tops)), rest)
        _splits.put((min_subtree, *result), self, departments)
        return result


def unquoted_parts(name: str) -> list[str]:
    """The parts of a (dotted) name as given to :class:`ClosureTable`, unquoted:
    ``'crm."Dept Closure"'`` → ``['crm', 'Dept Closure']`` (for renderers that quote names
    themselves)."""
    return [part[1:-1].replace('""', '"') if part.startswith('"') else part
            for part in _PART.findall(name)]


_trees: IdentityCache[DepartmentTree] = IdentityCache(256)
_splits: IdentityCache[tuple[int, tuple[str, ...], tuple[str, ...]]] = IdentityCache(4096)


def tree_of(authz: Authorizer, domain: str) -> DepartmentTree:
    """The current department tree of ``domain`` (cached per version of the tree)."""
    parents = authz.department_parents(domain=domain)
    found = _trees.get(parents)
    if found is None:
        found = _trees.put(_build(parents), parents)
    return found


def _build(parents: Mapping[str, str | None]) -> DepartmentTree:
    below: dict[str, set[str]] = {d: {d} for d in parents}
    for department in parents:
        seen = {department}
        ancestor = parents.get(department)
        while ancestor is not None and ancestor not in seen:  # a cycle (bad data) just stops
            seen.add(ancestor)
            if ancestor in below:
                below[ancestor].add(department)
            ancestor = parents.get(ancestor)
    digest = hashlib.sha256()
    for department in sorted(parents):
        digest.update(department.encode("utf-8", "surrogatepass") + b"\x00"
                      + (parents[department] or "").encode("utf-8", "surrogatepass") + b"\x01")
    return DepartmentTree(digest.hexdigest()[:32], {d: frozenset(s) for d, s in below.items()})


def tree_version(authz: Authorizer, domain: str) -> str:
    """The version of ``domain``'s current department tree (a digest of it: the same tree
    always has the same version, any change to it gives another)."""
    return tree_of(authz, domain).version


def rows(authz: Authorizer, domain: str) -> Iterator[tuple[str, str]]:
    """The ``(ancestor, descendant)`` pairs of ``domain``'s current tree, sorted."""
    below = tree_of(authz, domain).below
    for ancestor in sorted(below):
        for descendant in sorted(below[ancestor]):
            yield ancestor, descendant


def _marks(paramstyle: Literal["format", "qmark"], count: int) -> list[str]:
    if paramstyle not in ("format", "qmark"):
        raise ValueError(f"paramstyle must be 'format' (psycopg) or 'qmark' (sqlite3), "
                         f"got {paramstyle!r}")
    return ["%s" if paramstyle == "format" else "?"] * count


def _sql(table: ClosureTable, paramstyle: str) -> ClosureTable:
    """``table`` with its names as written in a statement of ``paramstyle`` (the percent style
    reads ``%`` as a placeholder marker: a quoted name's ``%`` is doubled)."""
    if paramstyle != "format":
        return table
    name, tenant, version, ancestor, descendant = (
        getattr(table, role).replace("%", "%%")
        for role in ("name", "tenant", "version", "ancestor", "descendant"))
    return ClosureTable(name, tenant, version, ancestor, descendant, table.min_subtree)


def is_synced(conn: Any, table: ClosureTable, authz: Authorizer, *, domain: str,
              paramstyle: Literal["format", "qmark"] = "format") -> bool:
    """Whether the table holds every row of ``domain``'s current tree (through a DB-API
    connection: psycopg, sqlite3, …)."""
    tree = tree_of(authz, domain)
    t, v = _marks(paramstyle, 2)
    table = _sql(table, paramstyle)
    cursor = conn.cursor()
    try:
        cursor.execute(f"SELECT COUNT(*) FROM {table.name} WHERE {table.tenant} = {t} AND "
                       f"{table.version} = {v}", [domain, tree.version])
        found = cursor.fetchone()
    finally:
        cursor.close()
    return bool(found) and found[0] == sum(len(s) for s in tree.below.values())


def sync(conn: Any, table: ClosureTable, authz: Authorizer, *, domain: str,
         paramstyle: Literal["format", "qmark"] = "format", prune: bool = True) -> str:
    """Write the rows of ``domain``'s current tree (unless already there) and, with ``prune``,
    delete the rows of the domain's other versions; returns the version. Runs in the caller's
    transaction: commit afterwards. Rows of older versions are never wrong (they describe the
    older tree), so a process still rendering with an older tree only loses the subtrees of
    its filters (fail closed) once they are pruned, until it sees the new tree."""
    tree = tree_of(authz, domain)
    tenant, version = _marks(paramstyle, 2)
    names = _sql(table, paramstyle)
    where = f"{names.tenant} = {tenant} AND {names.version} = {version}"
    cursor = conn.cursor()
    try:
        if not is_synced(conn, table, authz, domain=domain, paramstyle=paramstyle):
            cursor.execute(f"DELETE FROM {names.name} WHERE {where}", [domain, tree.version])
            marks = ", ".join(_marks(paramstyle, 4))
            cursor.executemany(
                f"INSERT INTO {names.name} ({names.tenant}, {names.version}, {names.ancestor}, "
                f"{names.descendant}) VALUES ({marks})",
                [(domain, tree.version, a, d) for a, d in rows(authz, domain)])
        if prune:
            cursor.execute(f"DELETE FROM {names.name} WHERE {names.tenant} = {tenant} AND "
                           f"{names.version} <> {version}", [domain, tree.version])
    finally:
        cursor.close()
    return tree.version

"""Use an existing Casbin store — the ``casbin_rule`` table of ``casbin-sqlalchemy-adapter`` — as
the rule store, and bring rules in from any ``casbin.persist.Adapter``.

Why not call ``casbin_sqlalchemy_adapter.Adapter`` itself for writes (see docs/adapters.md):

* **atomicity** — its ``add_policies`` commits each rule in its own session, and a batch that
  mixes removals and additions (every administrative operation does) spans several transactions;
  the audit record and the version bump could not join them either;
* **exactness** — ``load_policy`` joins the values with ``", "`` and re-splits them as CSV, so a
  value holding a comma or a quote does not come back unchanged; ``remove_policies`` filters each
  column with ``OR`` independently and can delete rules that were not asked for;
* **filtering** — its filter ANDs per-column lists, but the domain sits in ``v0``, ``v1`` or
  ``v2`` depending on the rule type, so "every rule of domain acme" is not expressible.

So :class:`CasbinRuleAdapter` reads and writes **the same table, with the same columns**, directly
through SQLAlchemy Core, in one transaction together with salesauthz's version and audit tables.

**Sharing the table.** salesauthz's rows carry a namespaced ``ptype``: ``salesauthz:p``,
``salesauthz:g2`` … (:data:`PTYPE_PREFIX` + the rule type). Casbin's loaders take the first letter
of a ``ptype`` as the model section and skip rows whose section or type the model does not define
(pycasbin's ``persist.load_policy_line``), so another application's enforcer on the same table
never sees salesauthz's six-value rows (which would fail its ``enforce`` with ``invalid policy
size``), and salesauthz reads only its own rows: the other application's ``p``/``g`` rows are
ignored. A table written by an older salesauthz, without the prefix, is migrated when it is
opened (:meth:`CasbinRuleAdapter.migrate_legacy_rows`).

**Values.** A ``casbin+`` store refuses (``PolicyError``, nothing written) a value that Casbin's
line-based loaders could not give back unchanged (:func:`salesauthz.casbin.value_problem`: a
comma outside brackets, an unbalanced bracket, surrounding whitespace, a line feed), so the table
stays readable by every Casbin adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesauthz._audit_chain import AuditDraft, AuditKeyOption
from salesauthz._rules import ARITY, DOMAIN_FIELD, Rule, casbin_value_problem, check_rule, domain_of
from salesauthz.errors import PolicyError, PolicyIssue

from .base import DEFAULT_LOG_RETENTION, Commit
from .sql import VALUE_COLUMNS, SQLAdapter, rows_to_rules, rule_values

__all__ = ["PTYPE_PREFIX", "CasbinRuleAdapter", "rules_from_casbin_adapter", "unstorable_values"]

logger = logging.getLogger("salesauthz.adapters")

PTYPE_PREFIX: Final = "salesauthz:"
"""Prepended to the rule type in the ``ptype`` column of salesauthz's rows (``salesauthz:p3``)."""


def stored_ptype(ptype: str) -> str:
    """The ``ptype`` column value of a salesauthz rule type."""
    return PTYPE_PREFIX + ptype


_OUR_STORED_PTYPES: Final = tuple(stored_ptype(p) for p in ARITY)


def unstorable_values(rule: Rule) -> list[str]:
    """Why values of ``rule`` cannot go into a Casbin store (empty when they all can)."""
    problems = []
    for value in rule[1:]:
        if isinstance(value, str) and (problem := casbin_value_problem(value)) is not None:
            problems.append(f"{value!r}: {problem}")
    return problems


def _ptypes_by_domain_column() -> dict[str, list[str]]:
    """``column → stored ptypes`` whose domain is in that column."""
    by_column: dict[str, list[str]] = {}
    for ptype, position in DOMAIN_FIELD.items():
        by_column.setdefault(VALUE_COLUMNS[position], []).append(stored_ptype(ptype))
    return by_column


def _our_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Stored rows with the namespace taken off the ptype (rows of others dropped)."""
    return [(row[0][len(PTYPE_PREFIX):], *row[1:]) for row in rows
            if isinstance(row[0], str) and row[0] in _OUR_STORED_PTYPES]


class CasbinRuleAdapter(SQLAdapter):
    """The ``casbin_rule`` table (``id, ptype, v0 … v5``) as a salesauthz store.

    Args:
        url: the database of the Casbin store, e.g. ``sqlite:///casbin.db`` or ``postgresql://…``.
        table: the Casbin table's name.
        create: create the table if missing (with ``TEXT`` columns; an existing table keeps its
            own column types — ``casbin-sqlalchemy-adapter`` creates ``VARCHAR(255)``, so longer
            values are refused by PostgreSQL with a :class:`~salesauthz.errors.StorageError`),
            and add the indexes a filtered load needs, plus the version, audit and audit anchor
            tables.
        audit_key: the key audit links are sealed with (as for
            :class:`~salesauthz.adapters.sql.SQLAdapter`).
    """

    def __init__(self, url: str, *, table: str = "casbin_rule", create: bool = True,
                 engine_options: dict[str, Any] | None = None, audit_key: AuditKeyOption = None,
                 log_retention: int = DEFAULT_LOG_RETENTION) -> None:
        self._table_name = table
        super().__init__(url, create=create, engine_options=engine_options, audit_key=audit_key,
                         log_retention=log_retention)
        if create:
            try:
                self._create_missing_indexes()
                self.migrate_legacy_rows()
            except BaseException:
                self.close()
                raise

    def _create_missing_indexes(self) -> None:
        # ``create_all`` skips the indexes of a table that already exists (one another Casbin
        # application created): add them here.
        with self._guard("index"):
            for index in sorted(self.rules_table.indexes, key=lambda i: str(i.name)):
                index.create(self.engine, checkfirst=True)

    def _define_tables(self) -> None:
        super()._define_tables()
        self.metadata.remove(self.rules_table)
        columns: list[sa.schema.SchemaItem] = [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ptype", sa.String(255)),
            *(sa.Column(name, sa.Text) for name in VALUE_COLUMNS),
        ]
        self.rules_table = sa.Table(self._table_name, self.metadata, *columns)
        # Hash indexes on PostgreSQL: equality is all a filtered load needs, and a hash index has
        # no B-tree entry-size limit (long non-Latin values); SQLite ignores the option.
        for column in ["ptype", *sorted(_ptypes_by_domain_column())]:
            sa.Index(f"ix_{self._table_name}_{column}", self.rules_table.c[column],
                     postgresql_using="hash")

    def _domain_sql(self, row: str) -> str:
        # The change triggers' view of a row's domain: v0, v1 or v2 depending on the rule type.
        cases = " ".join(f"WHEN '{ptype}' THEN {row}{column}"
                         for column, ptypes in sorted(_ptypes_by_domain_column().items())
                         for ptype in sorted(ptypes))
        return f"(CASE {row}ptype {cases} END)"

    def _domain_clause(self, domains: list[str]) -> sa.ColumnElement[bool]:
        table = self.rules_table
        return sa.or_(*(
            sa.and_(table.c[column].in_(domains), table.c.ptype.in_(ptypes))
            for column, ptypes in sorted(_ptypes_by_domain_column().items())
        ))

    def _load_rules(self, conn: Connection, domains: list[str] | None) -> list[Rule]:
        table = self.rules_table
        query = sa.select(table.c.ptype, *(table.c[name] for name in VALUE_COLUMNS)).order_by(table.c.id)
        if domains is not None:
            query = query.where(self._domain_clause(domains))
        else:
            query = query.where(table.c.ptype.in_(_OUR_STORED_PTYPES))
        return rows_to_rules(_our_rows(list(conn.execute(query))))

    def _create_fact_indexes(self) -> None:
        # Not on a table other applications share: the check inside each write transaction
        # (_check_facts) keeps salesauthz's writers from doubling a fact, and a load refuses a
        # domain whose facts another writer doubled.
        pass

    def _single_valued_rows(self, conn: Connection, ptype: str, domain: str,
                            accounts: list[str]) -> list[Rule]:
        table = self.rules_table
        domain_column = table.c[VALUE_COLUMNS[DOMAIN_FIELD[ptype]]]
        found: list[Rule] = []
        for start in range(0, len(accounts), 500):
            query = (sa.select(table.c.ptype, *(table.c[name] for name in VALUE_COLUMNS))
                     .where(table.c.ptype == stored_ptype(ptype), domain_column == domain,
                            table.c.v0.in_(accounts[start:start + 500])))
            found += rows_to_rules(_our_rows(list(conn.execute(query))))
        return found

    def commit(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> Commit:
        # Removing is always allowed (it is how such values leave a table written before).
        problems = [PolicyIssue(f"{rule!r} cannot be stored in a Casbin store: {problem}",
                                self.url, code="SA100",
                                hint="rename it, or keep the rules in a sqlite:/postgresql: store, "
                                     "which holds any text")
                    for rule in dict.fromkeys(added) if isinstance(rule, tuple)
                    for problem in unstorable_values(rule)]
        if problems:
            raise PolicyError(problems)
        return super().commit(added, removed, audit, expected=expected)

    def _match(self, rule: Rule) -> sa.ColumnElement[bool]:
        table = self.rules_table
        values = rule_values(rule)
        values["ptype"] = stored_ptype(rule[0])
        return sa.and_(*(
            table.c[column].is_(None) if value is None else table.c[column] == value
            for column, value in values.items()
        ))

    def _remove_rules(self, conn: Connection, rules: Sequence[Rule]) -> None:
        for rule in rules:  # every copy: a Casbin table may hold duplicates
            conn.execute(self.rules_table.delete().where(self._match(rule)))

    def _add_rules(self, conn: Connection, rules: Sequence[Rule]) -> None:
        # Set semantics: skip rules already there. Writers of a domain are serialised by the
        # version row lock taken first in the transaction, so check-then-insert is safe.
        table = self.rules_table
        missing = [r for r in rules
                   if conn.execute(sa.select(table.c.id).where(self._match(r)).limit(1)).first() is None]
        if missing:
            conn.execute(table.insert(), [{**rule_values(r), "ptype": stored_ptype(r[0])}
                                          for r in missing])

    def list_domains(self) -> list[str]:
        table = self.rules_table
        found: set[str] = set()
        with self._guard("read the domains from"), self.engine.connect() as conn:
            for column, ptypes in _ptypes_by_domain_column().items():
                query = sa.select(table.c[column]).where(table.c.ptype.in_(ptypes)).distinct()
                found.update(v for v in conn.execute(query).scalars() if v is not None)
        return sorted(found)

    # -- sharing the table -------------------------------------------------------------------

    def foreign_rows(self) -> list[tuple[str, ...]]:
        """The rows that are not salesauthz's — another Casbin application's policy — as
        ``(ptype, v0, …)`` cut at the first ``NULL``, in table order (as
        ``casbin-sqlalchemy-adapter`` reads them)."""
        table = self.rules_table
        query = (sa.select(table.c.ptype, *(table.c[name] for name in VALUE_COLUMNS))
                 .where(sa.or_(table.c.ptype.is_(None), table.c.ptype.not_in(_OUR_STORED_PTYPES)))
                 .order_by(table.c.id))
        rows: list[tuple[str, ...]] = []
        with self._guard("read the rows of"), self.engine.connect() as conn:
            for row in conn.execute(query):
                values: list[str] = []
                for value in row:
                    if value is None:
                        break
                    values.append(str(value))
                if values:
                    rows.append(tuple(values))
        return rows

    def migrate_legacy_rows(self) -> dict[str, int]:
        """Namespace the rows an older salesauthz wrote without the ``salesauthz:`` prefix.

        Runs only on a table that holds no namespaced row yet, and takes only rows that are
        certainly salesauthz's: a rule type and width of salesauthz, a well-formed rule, in a
        domain salesauthz's versions table knows (every domain an older salesauthz wrote is
        there; another application's rows are not). One transaction; the domains' versions are
        bumped so that watching processes reload. Idempotent, and safe with several processes
        opening the store at once. Returns ``{domain: rows migrated}``.
        """
        table = self.rules_table
        versions = self.versions_table
        with self._guard("migrate the rows of"), self.engine.connect() as base:
            conn = base.execution_options(salesauthz_write=True)
            with conn.begin():
                # Cheapest test first: a table no salesauthz ever wrote has no versions.
                known_domains = set(conn.execute(sa.select(versions.c.domain)).scalars())
                if not known_domains:
                    return {}
                namespaced = conn.execute(
                    sa.select(table.c.id).where(table.c.ptype.in_(_OUR_STORED_PTYPES)).limit(1)).first()
                if namespaced is not None:
                    return {}
                candidates = conn.execute(
                    sa.select(table.c.id, table.c.ptype, *(table.c[name] for name in VALUE_COLUMNS))
                    .where(table.c.ptype.in_(list(ARITY))))
                ids_by_ptype: dict[str, list[int]] = {}
                counts: dict[str, int] = {}
                for row in candidates:
                    rule = _legacy_rule(tuple(row[1:]))
                    if rule is None or domain_of(rule) not in known_domains:
                        continue
                    ids_by_ptype.setdefault(rule[0], []).append(int(row[0]))
                    counts[domain_of(rule)] = counts.get(domain_of(rule), 0) + 1
                if not counts:
                    return {}
                self._bump_versions(conn, sorted(counts))
                for ptype, ids in sorted(ids_by_ptype.items()):
                    for start in range(0, len(ids), 500):
                        # ``ptype = old`` again: a second process migrating at the same moment
                        # finds the rows already renamed and changes nothing.
                        conn.execute(table.update()
                                     .where(table.c.id.in_(ids[start:start + 500]), table.c.ptype == ptype)
                                     .values(ptype=stored_ptype(ptype)))
        logger.warning("salesauthz: namespaced %d rule row(s) an older salesauthz wrote in %s "
                       "(ptype p → salesauthz:p …) so that other Casbin applications can share the table",
                       sum(counts.values()), self.url)
        return counts


def _legacy_rule(row: tuple[Any, ...]) -> Rule | None:
    """The rule an older salesauthz stored in ``row`` (``ptype, v0..v5``), or ``None`` if the
    row is not exactly such a rule."""
    ptype, values = row[0], row[1:]
    width = ARITY[ptype]  # the query took only salesauthz's rule types
    if any(v is None for v in values[:width]) or any(v is not None for v in values[width:]):
        return None
    rule: Rule = (ptype, *values[:width])
    return rule if check_rule(rule) is None else None


def rules_from_casbin_adapter(adapter: Any, model_text: str | None = None) -> list[Rule]:
    """Every rule held by any ``casbin.persist.Adapter`` (read through Casbin's own
    ``load_policy``), for a one-off migration into a salesauthz store (``import`` them with
    :meth:`~salesauthz.adapters.base.Adapter.apply`).

    The adapter must hold salesauthz rules (rule types and widths of salesauthz's model).
    Raises :class:`~salesauthz.errors.PolicyError` naming every line that is not one — another
    application's Casbin policy is translated with :func:`salesauthz.casbin.import_policy`.
    """
    import casbin

    from salesauthz.models.loader import bundled_model_text

    model = casbin.Enforcer.new_model(text=model_text if model_text is not None else bundled_model_text())
    adapter.load_policy(model)
    rows: list[tuple[str, ...]] = []
    for section in ("p", "g"):
        for ptype, assertion in model.model.get(section, {}).items():
            rows.extend((ptype, *values) for values in assertion.policy)
    problems = [PolicyIssue(f"{problem}: {row!r}", code="SA100",
                            hint="this looks like another application's Casbin policy: translate it "
                                 "with `salesauthz import --from-casbin MODEL.conf POLICY DIR`")
                for row in rows if (problem := check_rule(row)) is not None]
    if problems:
        raise PolicyError(problems)
    return rows_to_rules(rows)

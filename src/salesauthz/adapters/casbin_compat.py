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
A pycasbin enforcer using ``casbin-sqlalchemy-adapter`` on that table keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesauthz._audit_chain import AuditKeyOption
from salesauthz._rules import DOMAIN_FIELD, Rule

from .sql import VALUE_COLUMNS, SQLAdapter, rows_to_rules, rule_values

__all__ = ["CasbinRuleAdapter", "rules_from_casbin_adapter"]


def _ptypes_by_domain_column() -> dict[str, list[str]]:
    by_column: dict[str, list[str]] = {}
    for ptype, position in DOMAIN_FIELD.items():
        by_column.setdefault(VALUE_COLUMNS[position], []).append(ptype)
    return by_column


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
                 engine_options: dict[str, Any] | None = None, audit_key: AuditKeyOption = None) -> None:
        self._table_name = table
        super().__init__(url, create=create, engine_options=engine_options, audit_key=audit_key)

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
        for column in sorted(_ptypes_by_domain_column()):
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
        return rows_to_rules(conn.execute(query))

    def _match(self, rule: Rule) -> sa.ColumnElement[bool]:
        table = self.rules_table
        return sa.and_(*(
            table.c[column].is_(None) if value is None else table.c[column] == value
            for column, value in rule_values(rule).items()
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
            conn.execute(table.insert(), [rule_values(r) for r in missing])

    def list_domains(self) -> list[str]:
        table = self.rules_table
        found: set[str] = set()
        with self._guard("read the domains from"), self.engine.connect() as conn:
            for column, ptypes in _ptypes_by_domain_column().items():
                query = sa.select(table.c[column]).where(table.c.ptype.in_(ptypes)).distinct()
                found.update(v for v in conn.execute(query).scalars() if v is not None)
        return sorted(found)


def rules_from_casbin_adapter(adapter: Any, model_text: str | None = None) -> list[Rule]:
    """Every rule held by any ``casbin.persist.Adapter`` (read through Casbin's own
    ``load_policy``), for a one-off migration into a salesauthz store (``import`` them with
    :meth:`~salesauthz.adapters.base.Adapter.apply`)."""
    import casbin

    from salesauthz.models.loader import bundled_model_text

    model = casbin.Enforcer.new_model(text=model_text if model_text is not None else bundled_model_text())
    adapter.load_policy(model)
    rows: list[tuple[str, ...]] = []
    for section in ("p", "g"):
        for ptype, assertion in model.model.get(section, {}).items():
            rows.extend((ptype, *values) for values in assertion.policy)
    return rows_to_rules(rows)

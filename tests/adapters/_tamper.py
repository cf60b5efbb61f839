"""Someone with write access to a store's data but not to salesauthz: rewrites audit rows and
anchors directly (raw SQL on the SQL stores, the lists of the in-memory store), and writes rule
rows no salesauthz writer would (a DBA's SQL, another Casbin adapter)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Protocol, cast

import sqlalchemy as sa

from salesauthz._audit_chain import GENESIS, AuditAnchor, AuditKey, AuditRecord
from salesauthz._rules import DOMAIN_FIELD, Rule, domain_of
from salesauthz.adapters.base import Adapter
from salesauthz.adapters.casbin_compat import CasbinRuleAdapter, stored_ptype
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.adapters.sql import SINGLE_VALUED_TYPES, VALUE_COLUMNS, SQLAdapter, domain_key, rule_key

RawRow = tuple[str | None, ...]
"""``(ptype, v0, …)`` as a foreign writer stores it: ``None`` for a ``NULL``."""


class Tamperer(Protocol):
    def records(self, domain: str) -> list[AuditRecord]: ...

    def rewrite(self, domain: str, records: Sequence[AuditRecord]) -> None:
        """Replace the domain's stored records with ``records``, stored in this order."""

    def anchor(self, domain: str) -> AuditAnchor | None: ...

    def set_anchor(self, domain: str, anchor: AuditAnchor | None) -> None: ...

    def insert_rows(self, rows: Sequence[RawRow]) -> None:
        """Store rule rows as they are, past every check salesauthz makes (on the native SQL
        table, after dropping its unique indexes, as in a database written before them)."""


class MemoryTamperer:
    def __init__(self, store: MemoryAdapter) -> None:
        self.store = store

    def records(self, domain: str) -> list[AuditRecord]:
        return [r for r in self.store._audit if r.domain == domain]

    def rewrite(self, domain: str, records: Sequence[AuditRecord]) -> None:
        self.store._audit[:] = [r for r in self.store._audit if r.domain != domain] + list(records)

    def anchor(self, domain: str) -> AuditAnchor | None:
        return self.store._anchors.get(domain)

    def set_anchor(self, domain: str, anchor: AuditAnchor | None) -> None:
        if anchor is None:
            self.store._anchors.pop(domain, None)
        else:
            self.store._anchors[domain] = anchor

    def insert_rows(self, rows: Sequence[RawRow]) -> None:
        for row in rows:  # deliberately not well-formed rules, filed under their domain if any
            try:
                name: object = domain_of(cast(Rule, row))
            except (IndexError, KeyError, TypeError):
                name = None
            self.store._rules.setdefault(name if isinstance(name, str) else "", {})[
                cast(Rule, row)] = None


class SQLTamperer:
    def __init__(self, store: SQLAdapter) -> None:
        self.store = store

    def records(self, domain: str) -> list[AuditRecord]:
        return self.store.load_audit(domain)

    def rewrite(self, domain: str, records: Sequence[AuditRecord]) -> None:
        table = self.store.audit_table
        with self.store.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.domain_key == domain_key(domain)))
            for record in records:  # one by one: ids (the stored order) follow the list
                conn.execute(table.insert().values(domain_key=domain_key(domain), sequence=record.sequence,
                                                   hash=record.hash, record=record.to_json()))

    def anchor(self, domain: str) -> AuditAnchor | None:
        return self.store.read_audit(domain).anchors.get(domain)

    def set_anchor(self, domain: str, anchor: AuditAnchor | None) -> None:
        table = self.store.anchors_table
        with self.store.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.domain_key == domain_key(domain)))
            if anchor is not None:
                conn.execute(table.insert().values(
                    domain_key=domain_key(domain), domain=anchor.domain, record_count=anchor.count,
                    head=anchor.head, key_id=anchor.key_id, mac=anchor.mac))

    def insert_rows(self, rows: Sequence[RawRow]) -> None:
        table = self.store.rules_table
        with self.store.engine.begin() as conn:
            if isinstance(self.store, CasbinRuleAdapter):
                conn.execute(table.insert(), [
                    {"ptype": stored_ptype(str(row[0])),
                     **{c: (row[1 + i] if 1 + i < len(row) else None) for i, c in enumerate(VALUE_COLUMNS)}}
                    for row in rows])
                return
            for ptype in SINGLE_VALUED_TYPES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {table.name}_one_{ptype}")
            for row in rows:
                domain = row[1 + DOMAIN_FIELD[str(row[0])]] or ""
                conn.execute(table.insert().values(
                    # The key salesauthz gives a rule, where the row is one (so it can remove it).
                    rule_key=(rule_key(cast(Rule, row)) if None not in row
                              else hashlib.sha256(repr(row).encode()).hexdigest()),
                    domain_key=domain_key(domain),
                    domain=domain, ptype=row[0],
                    **{c: (row[1 + i] if 1 + i < len(row) else None) for i, c in enumerate(VALUE_COLUMNS)}))

    def corrupt(self, domain: str, sequence: int, text: str) -> None:
        """Overwrite one stored record's JSON with ``text``."""
        table = self.store.audit_table
        with self.store.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.domain_key == domain_key(domain),
                                                table.c.sequence == sequence).values(record=text))


def tamperer_for(store: Adapter) -> Tamperer:
    if isinstance(store, MemoryAdapter):
        return MemoryTamperer(store)
    assert isinstance(store, SQLAdapter)
    return SQLTamperer(store)


# -- what an attacker without the key can compute --------------------------------------------


def relink(records: Sequence[AuditRecord], start: int, key: AuditKey | None) -> list[AuditRecord]:
    """``records`` renumbered and re-chained from index ``start`` on, each link recomputed with
    ``key`` (``None``: plain SHA-256)."""
    out = list(records[:start])
    previous = out[-1].hash if out else GENESIS
    for position, record in enumerate(records[start:], start=start + 1):
        unsealed = dataclasses.replace(record, sequence=position, previous_hash=previous,
                                       key_id=key.key_id if key is not None else "", hash="")
        sealed = dataclasses.replace(unsealed, hash=unsealed.compute_hash(key))
        out.append(sealed)
        previous = sealed.hash
    return out


def anchor_for(domain: str, records: Sequence[AuditRecord], key: AuditKey | None) -> AuditAnchor:
    """The anchor matching ``records``, sealed with ``key``."""
    return AuditAnchor.sealed(domain, len(records), records[-1].hash if records else GENESIS, key)

"""A minimal pycasbin adapter over the standard library's ``sqlite3``: the plainest, fastest way
to hand Casbin rules kept in SQLite (the baseline of ``bench_storage.py``'s loading part).

The table is the usual ``casbin_rule (ptype, v0 … v5)``. ``load_policy`` reads every row with
one cursor and appends each rule's values straight to the model — no ORM objects, no string
formatting and re-parsing through ``persist.load_policy_line`` (which most adapters do, and
which costs more than the read itself) — so what is measured is SQLite plus Casbin.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from casbin import persist

COLUMNS = ("v0", "v1", "v2", "v3", "v4", "v5")
SCHEMA = ("CREATE TABLE IF NOT EXISTS casbin_rule (id INTEGER PRIMARY KEY, ptype TEXT NOT NULL, "
          + ", ".join(f"{c} TEXT" for c in COLUMNS) + ")")


def write_rules(path: str, rules: Iterable[Sequence[str]]) -> int:
    """Store ``(ptype, v0, …)`` rules in ``path``'s ``casbin_rule`` table; the number written."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(SCHEMA)
        rows = [(r[0], *r[1:], *([None] * (7 - len(r)))) for r in rules]
        with connection:
            connection.executemany(
                "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows)
        return len(rows)
    finally:
        connection.close()


class SQLite3Adapter(persist.Adapter):  # type: ignore[misc]  # pycasbin is untyped
    """Read-only (``load_policy``); enough for a load benchmark."""

    def __init__(self, path: str, *, parse_lines: bool = False) -> None:
        self.path = path
        self.parse_lines = parse_lines  # True: the common adapter idiom, load_policy_line

    def load_policy(self, model: Any) -> None:
        connection = sqlite3.connect(self.path)
        try:
            cursor = connection.execute("SELECT ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule")
            sections = model.model
            if self.parse_lines:
                for row in cursor:
                    persist.load_policy_line(", ".join(v for v in row if v is not None), model)
                return
            assertions: dict[str, Any] = {}
            for row in cursor:
                ptype = row[0]
                assertion = assertions.get(ptype)
                if assertion is None:
                    section = sections.get(ptype[:1], {})
                    if ptype not in section:
                        continue
                    assertion = assertions[ptype] = section[ptype]
                values = list(row[1:])
                while values and values[-1] is None:
                    values.pop()
                assertion.policy.append(values)
        finally:
            connection.close()

    def save_policy(self, model: Any) -> bool:
        return False

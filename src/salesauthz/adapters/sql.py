"""The SQL store (SQLAlchemy 2.x Core): an SQLite file embedded, or PostgreSQL (psycopg 3) shared.

Five tables, written in ONE transaction per change:

``salesauthz_rules``
    one row per rule: ``rule_key`` (SHA-256 of the rule, the primary key — it gives set semantics
    without a unique index over six long text columns, which PostgreSQL's B-tree could not hold
    for 1,000-character non-Latin values), ``domain_key`` (a hash of the domain, indexed: a
    filtered load is an index lookup), ``domain``, ``ptype``, ``v0`` … ``v5`` (``NULL`` past the
    rule's arity, so ``""`` stays distinct from "absent").
``salesauthz_versions``
    ``domain_key`` → ``version``: bumped by every change of the domain, in the same transaction.
    The row lock taken by the bump also serialises concurrent writers of one domain, so audit
    chains never fork, the compare-and-set of a change decided on an older version
    (``expected``) is exact, and the check that no account gets two statuses, departments or
    parents (a read of the rows concerned, then the write) cannot race another writer. The
    native table also has partial unique indexes on those facts (one row per account and
    domain), which hold against writes made outside salesauthz too.
``salesauthz_changes``
    the change log: ``(domain_key, version)`` → the rules the change removed and added (JSON;
    ``NULL`` for a change too large to log). Followers apply it instead of reloading the domain;
    each write prunes the entries more than ``log_retention`` versions old.
``salesauthz_audit``
    the sealed audit records (``domain_key``, ``sequence`` unique; the record as canonical JSON).
``salesauthz_audit_anchors``
    ``domain_key`` → the anchor of the domain's audit trail: ``record_count``, ``head`` (the last
    record's link) and, with an audit key, ``key_id`` and ``mac``. Updated with the records it
    counts, under the version row's lock. Created (and filled from the existing trails, with a
    logged warning) on the first open of a database written before anchors existed.

The Casbin-compatible variant (:mod:`salesauthz.adapters.casbin_compat`) swaps the rules table for
an existing ``casbin_rule`` table and keeps the other four.

Two more things make the store safe to share (docs/adapters.md, "Timeouts" and "Writes made
outside salesauthz"):

* **No call waits forever.** Connections get a connect timeout, TCP keepalives and, on
  PostgreSQL, a server-side ``statement_timeout``; a client-side deadline (a watchdog that shuts
  the socket down) ends a call whose answer never comes — a frozen server or a half-open
  connection, which TCP alone takes ~15 minutes to notice. :meth:`SQLAdapter.deadline` tightens
  that for the calls of one thread (a watcher uses it, so that a hung store cannot hold a lock
  past its staleness bound).
* **Writes made by others are noticed.** Triggers on the rules table bump the version of each
  domain that a foreign write (pycasbin, a DBA's SQL) touched: directly on PostgreSQL (and
  ``NOTIFY`` the watchers), through a small queue table on SQLite that :meth:`SQLAdapter.versions`
  folds into version bumps. salesauthz's own write transactions mark themselves so that they are
  not counted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from salesauthz._audit_chain import (
    AuditAnchor,
    AuditDraft,
    AuditKeyOption,
    AuditKeyring,
    AuditRecord,
    AuditSnapshot,
    chain_end,
    parse_record,
    reanchor_end,
    seal,
)
from salesauthz._rules import ARITY, DOMAIN_FIELD, Rule, check_rule, domain_of
from salesauthz.errors import AuditVerificationError, ConflictError, PolicyError, PolicyIssue, StorageError

from ._deadline import call_before, shutdown_socket, watchdog
from .base import (
    DEFAULT_LOG_RETENTION,
    LOG_MAX_RULES,
    AppliesByCommit,
    Change,
    ChangeFeed,
    Commit,
    Loaded,
    mask_url,
)

__all__ = ["CommitListener", "SQLAdapter", "StoreTimeouts", "domain_key", "engine_url",
           "install_change_triggers", "rule_key"]

CommitListener = Callable[[dict[str, int]], None]
"""Called after every committed change with ``{domain: new version}``."""

VALUE_COLUMNS = ("v0", "v1", "v2", "v3", "v4", "v5")
SINGLE_VALUED_TYPES = ("p3", "g3", "g4", "g6")
"""Rule types stating an account's single-valued facts (status, main department, parent account,
reporting superior)."""

_log = logging.getLogger("salesauthz.audit")

# Serialises the one-off creation and filling of the anchors table between processes opening
# the same PostgreSQL database at once (a transaction-level advisory lock: released at commit).
_ANCHOR_MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"salesauthz_audit_anchors").digest()[:8],
                                        "big", signed=True)
_FACT_INDEX_LOCK = int.from_bytes(hashlib.sha256(b"salesauthz_rules_one").digest()[:8], "big", signed=True)


def rule_key(rule: Rule) -> str:
    """A stable identity for a rule: SHA-256 of its values joined by NUL (which no value may
    contain, so the encoding is unambiguous)."""
    return hashlib.sha256("\x00".join(rule).encode("utf-8")).hexdigest()


def domain_key(domain: str) -> str:
    """A short fixed-width key for a domain name of any length (indexable everywhere)."""
    return hashlib.sha256(domain.encode("utf-8")).hexdigest()[:32]


def engine_url(url: str) -> str:
    """The SQLAlchemy URL for a store URL: ``postgresql://`` uses psycopg 3."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


# -- timeouts ---------------------------------------------------------------------------------

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 30.0
CLIENT_GRACE = 2.0
"""Seconds the client waits past ``statement_timeout`` for the server's own cancellation to come
back before it gives the connection up as dead."""

# libpq keywords salesauthz sets unless the URL sets them itself: a dead peer of an idle pooled
# connection is noticed by the kernel in about 5 + 3 x 2 = 11 s, and data the server does not
# acknowledge for 10 s breaks the connection (instead of ~15 minutes of retransmissions).
LIBPQ_DEFAULTS = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
                  "keepalives_count": "3", "tcp_user_timeout": "10000"}

OWN_WRITE_SETTING = "salesauthz.writer"
"""PostgreSQL: set (transaction-local) by salesauthz's write transactions; the change triggers
skip those, which bump their versions themselves."""
CHANNEL_SETTING = "salesauthz.channel"
"""PostgreSQL: the ``NOTIFY`` channel of the change triggers (default ``salesauthz``), e.g.
``ALTER DATABASE crm SET salesauthz.channel = 'crm_authz'`` for a watcher on ``?channel=crm_authz``."""
OWN_WRITES_TABLE = "salesauthz_own_writes"
EXTERNAL_CHANGES_TABLE = "salesauthz_external_changes"
"""SQLite: the marker of salesauthz's own write transactions, and the queue of domains touched by
other writers (both tiny and usually empty)."""


@dataclass(frozen=True, slots=True)
class StoreTimeouts:
    """How long a store call may take (seconds). Set through the store URL:

    * ``connect_timeout`` (PostgreSQL, libpq's own keyword; whole seconds, at least 2): opening a
      connection. Default 5.
    * ``statement_timeout`` (salesauthz's; taken out of the URL before it reaches the driver):
      PostgreSQL cancels a statement running longer (server-side ``statement_timeout``, also
      used as ``idle_in_transaction_session_timeout``), and the client gives a connection up if
      no answer came ``CLIENT_GRACE`` seconds later (not for a bulk ``executemany``); on SQLite
      it is the busy timeout (how long a writer waits for another's lock). Default 30.
    * libpq's ``keepalives*`` and ``tcp_user_timeout`` keywords (defaults in ``LIBPQ_DEFAULTS``).
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    statement: float = DEFAULT_STATEMENT_TIMEOUT

    @property
    def answer(self) -> float:
        """The client-side limit for one statement, commit or rollback."""
        return self.statement + CLIENT_GRACE


def _positive_seconds(name: str, value: str, url: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise StorageError(f"{name}={value!r} in store URL {mask_url(url)}: expected a positive number "
                           "of seconds", url=mask_url(url))
    return seconds


def prepare_url(url: str) -> tuple[sa.URL, StoreTimeouts]:
    """The SQLAlchemy URL for a store URL, with salesauthz's defaults for connect and statement
    timeouts and TCP keepalives filled in wherever the URL does not set its own."""
    try:
        target = sa.engine.make_url(engine_url(url))
    except Exception as exc:
        raise StorageError(f"cannot open store {mask_url(url)}: {type(exc).__name__}: not a store URL",
                           url=mask_url(url)) from None
    query = dict(target.query)
    statement = query.pop("statement_timeout", None)
    timeouts = StoreTimeouts(
        statement=DEFAULT_STATEMENT_TIMEOUT if statement is None
        else _positive_seconds("statement_timeout", str(statement), url))
    if target.get_backend_name() == "postgresql":
        connect = query.get("connect_timeout")
        if connect is None:
            query["connect_timeout"] = str(math.ceil(timeouts.connect))
        else:
            timeouts = StoreTimeouts(_positive_seconds("connect_timeout", str(connect), url),
                                     timeouts.statement)
        for keyword, value in LIBPQ_DEFAULTS.items():
            query.setdefault(keyword, value)
        options = str(query.get("options", ""))
        milliseconds = int(timeouts.statement * 1000)
        if "statement_timeout" not in options:
            options += f" -c statement_timeout={milliseconds}"
        if "idle_in_transaction_session_timeout" not in options:
            options += f" -c idle_in_transaction_session_timeout={milliseconds}"
        query["options"] = options.strip()
    return target.set(query=query), timeouts


LOAD_BATCH: Final = 10_000
"""Rows fetched from the driver at a time when loading rules."""


def rule_values(rule: Rule) -> dict[str, str | None]:
    """The ``ptype``/``v0``…``v5`` columns of a rule (``None`` past its arity)."""
    values: dict[str, str | None] = {"ptype": rule[0]}
    for position, column in enumerate(VALUE_COLUMNS):
        values[column] = rule[1 + position] if 1 + position < len(rule) else None
    return values


def rows_to_rules(rows: Iterable[Sequence[Any]]) -> list[Rule]:
    """``(ptype, v0..v5)`` rows to rule tuples, cut at each type's arity; duplicates dropped.

    A ``NULL`` within the arity stays in the tuple as ``None``, and a row with a value past its
    type's arity keeps its values up to the last one: both are malformed rules, which the load
    refuses naming them (:func:`salesauthz.models.validate.stored_rule_issues`) rather than
    guessing what they meant."""
    width_of = {ptype: 1 + arity for ptype, arity in ARITY.items()}.get
    rules: dict[Rule, None] = {}
    for row in rows:
        width = width_of(row[0])
        if width is None:  # a row this model does not know (e.g. another app's Casbin policy)
            continue
        if any(row[width:]):  # a value past the arity ("" there is as good as absent)
            last = max(i for i, value in enumerate(row) if value not in (None, ""))
            rules[tuple(row[:last + 1])] = None
            continue
        rules[tuple(row[:width])] = None
    return list(rules)


class SQLAdapter(AppliesByCommit):
    """Rules, per-domain versions and the audit trail in one SQL database.

    Args:
        url: ``sqlite:///salesauthz.db`` or ``postgresql://user:password@host/db`` (psycopg 3);
            timeouts are set in it (:class:`StoreTimeouts`).
        create: create missing tables and indexes, and the triggers that notice writes made
            outside salesauthz (idempotent).
        engine_options: passed to :func:`sqlalchemy.create_engine`.
        audit_key: the key audit links are sealed with (see
            :meth:`~salesauthz._audit_chain.AuditKeyring.of`; default: ``SALESAUTHZ_AUDIT_KEY``).
        log_retention: change-log entries kept per domain (a follower further behind reloads).

    Raises :class:`~salesauthz.errors.StorageError` naming the URL (password masked) when the
    store cannot be reached.
    """

    def __init__(self, url: str, *, create: bool = True, engine_options: dict[str, Any] | None = None,
                 audit_key: AuditKeyOption = None, log_retention: int = DEFAULT_LOG_RETENTION) -> None:
        if log_retention < 1:
            raise ValueError("log_retention must be at least 1 (versions kept per domain)")
        self._retention = log_retention
        self._audit_key = audit_key
        self._keys: AuditKeyring | None = None  # resolved on first use: see audit_keys
        self._url = mask_url(url)
        self._secret = _password_of(url)
        self._listeners: list[CommitListener] = []
        self._listeners_lock = threading.Lock()
        self._closed = False
        self._local = threading.local()  # this thread's deadline (see deadline())
        target, self.timeouts = prepare_url(url)
        self._sqlite = target.get_backend_name() == "sqlite"
        # Pre-pinging is done in _watch_connections (under a deadline), not by the pool.
        options: dict[str, Any] = {"pool_pre_ping": False}
        if self._sqlite:
            options["connect_args"] = {"timeout": self.timeouts.statement, "check_same_thread": False}
        options.update(engine_options or {})
        self.metadata = sa.MetaData()
        self._define_tables()
        self._tracks_own_writes = False  # SQLite: the own-write marker table exists
        try:
            self.engine: Engine = sa.create_engine(target, **options)
            self._watch_connections()
            if self._sqlite:
                _serialise_sqlite_writers(self.engine, self)
            else:
                _mark_postgresql_writers(self.engine)
            if create:
                with self._guard("create the tables of"):
                    self._create_schema()
                    with self.engine.connect() as conn, conn.begin():
                        install_change_triggers(conn, self.rules_table.name, self._domain_sql)
                    self._create_fact_indexes()
                self._tracks_own_writes = self._sqlite
            else:
                with self._guard("connect to"), self.engine.connect() as conn:
                    if self._sqlite:
                        self._tracks_own_writes = sa.inspect(conn).has_table(OWN_WRITES_TABLE)
        except StorageError:
            raise
        except Exception as exc:  # bad URL, missing driver …
            raise StorageError(f"cannot open store {self._url}: {_describe(exc, self._secret)}",
                               url=self._url) from None

    # -- deadlines -------------------------------------------------------------------------

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Inside the block, every store call made by this thread fails with a
        :class:`~salesauthz.errors.StorageError` unless it is done by ``at``
        (``time.monotonic()`` seconds) — whatever the network does. Blocks nest (the earlier
        deadline wins)."""
        outer: float | None = getattr(self._local, "deadline", None)
        self._local.deadline = at if outer is None else min(outer, at)
        try:
            yield
        finally:
            self._local.deadline = outer

    def _deadline_of_thread(self) -> float | None:
        deadline: float | None = getattr(self._local, "deadline", None)
        return deadline

    def _watch_connections(self) -> None:
        """Give every call on a pooled connection a deadline (see the module docstring).

        A thread's own deadline (``deadline()``) applies to everything. Otherwise: on PostgreSQL
        each statement, commit and rollback must be answered within ``timeouts.answer`` and a
        checkout's pre-ping within ``timeouts.connect``. A bulk ``executemany`` (an import of a
        million rules is one) gets no such limit — the server still cancels each of its
        statements at ``statement_timeout`` and TCP keepalives watch the connection. SQLite,
        local, has only its busy timeout."""
        engine, sqlite, local = self.engine, self._sqlite, self._local
        answer: float | None = None if sqlite else self.timeouts.answer
        ping: float | None = None if sqlite else self.timeouts.connect
        key = "salesauthz_deadline"

        def cut(dbapi_connection: Any, status: _CallStatus) -> Callable[[], None]:
            def action() -> None:
                status.cut = True
                if sqlite:
                    dbapi_connection.interrupt()
                else:
                    shutdown_socket(dbapi_connection.fileno())
            return action

        def arm(info: dict[str, Any], dbapi_connection: Any, limit: float | None) -> None:
            disarm(info)
            candidates = [getattr(local, "deadline", None)]
            if limit is not None:
                candidates.append(time.monotonic() + limit)
            deadlines = [at for at in candidates if at is not None]
            if deadlines:
                info[key] = watchdog.arm(min(deadlines), cut(dbapi_connection, _call_status(local)))

        def disarm(info: dict[str, Any]) -> None:
            ticket = info.pop(key, None)
            if ticket is not None:
                watchdog.disarm(ticket)

        @event.listens_for(engine, "connect")
        def _fresh(dbapi_connection: Any, record: Any) -> None:
            record.info["salesauthz_fresh"] = True

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            if record.info.pop("salesauthz_fresh", False):
                return
            # What pool_pre_ping does, but with a deadline: a stranded pooled connection is
            # replaced (DisconnectionError makes the pool open a new one) instead of hanging.
            arm(record.info, dbapi_connection, ping)
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                disarm(record.info)
                raise sa.exc.DisconnectionError(f"pre-ping failed: {type(exc).__name__}") from exc

        @event.listens_for(engine, "before_cursor_execute")
        def _statement(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                       executemany: bool) -> None:
            arm(conn.connection.info, conn.connection.dbapi_connection, None if executemany else answer)

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _end(conn: Connection) -> None:
            if not conn.invalidated:  # an invalidated connection's rollback does no I/O
                arm(conn.connection.info, conn.connection.dbapi_connection, answer)

        @event.listens_for(engine, "reset")
        def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
            arm(record.info, dbapi_connection, answer)

        for name in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
            # Disarmed before the connection is closed: its descriptor number may be reused.
            event.listen(engine, name, lambda dbapi_connection, record, *rest: disarm(record.info))

        if not sqlite:
            @event.listens_for(engine, "do_connect")
            def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
                deadline: float | None = getattr(local, "deadline", None)
                if deadline is None:
                    return None  # libpq's connect_timeout bounds it
                return call_before(deadline, lambda: dialect.connect(*cargs, **cparams),
                                   lambda late: late.close())

    # -- schema ----------------------------------------------------------------------------

    def _define_tables(self) -> None:
        self.rules_table = sa.Table(
            "salesauthz_rules", self.metadata,
            sa.Column("rule_key", sa.String(64), primary_key=True),
            sa.Column("domain_key", sa.String(32), nullable=False, index=True),
            sa.Column("domain", sa.Text, nullable=False),
            sa.Column("ptype", sa.String(8), nullable=False),
            *(sa.Column(name, sa.Text, nullable=True) for name in VALUE_COLUMNS),
        )
        self.versions_table = sa.Table(
            "salesauthz_versions", self.metadata,
            sa.Column("domain_key", sa.String(32), primary_key=True),
            sa.Column("domain", sa.Text, nullable=False),
            sa.Column("version", sa.BigInteger, nullable=False),
        )
        self.audit_table = sa.Table(
            "salesauthz_audit", self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("domain_key", sa.String(32), nullable=False),
            sa.Column("sequence", sa.BigInteger, nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Column("record", sa.Text, nullable=False),
            sa.UniqueConstraint("domain_key", "sequence", name="salesauthz_audit_chain"),
        )
        self.changes_table = sa.Table(
            "salesauthz_changes", self.metadata,
            sa.Column("domain_key", sa.String(32), primary_key=True),
            sa.Column("version", sa.BigInteger, primary_key=True),
            sa.Column("payload", sa.Text, nullable=True),  # {"a": added, "r": removed}; NULL: reload
        )
        self.anchors_table = sa.Table(
            "salesauthz_audit_anchors", self.metadata,
            sa.Column("domain_key", sa.String(32), primary_key=True),
            sa.Column("domain", sa.Text, nullable=False),
            sa.Column("record_count", sa.BigInteger, nullable=False),
            sa.Column("head", sa.String(64), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("mac", sa.String(64), nullable=False),
        )
        if self._sqlite:
            # The triggers' bookkeeping on SQLite (see install_change_triggers).
            self.own_writes_table = sa.Table(OWN_WRITES_TABLE, self.metadata,
                                             sa.Column("marker", sa.Integer, nullable=False))
            self.external_table = sa.Table(
                EXTERNAL_CHANGES_TABLE, self.metadata,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("domain", sa.Text, nullable=True),
            )

    def _domain_sql(self, row: str) -> str:
        """SQL for the domain of a rules-table row (``row`` is ``NEW.``, ``OLD.`` or ``""``)."""
        return f"{row}domain"

    def _create_fact_indexes(self) -> None:
        """One row per account and domain for each single-valued fact, as partial unique indexes
        (``md5(v0)`` on PostgreSQL, whose B-tree entries cannot hold long names). A database
        that already holds doubled facts keeps working without them (logged): loading refuses
        those domains and writes still check inside their transaction."""
        postgres = self.engine.dialect.name == "postgresql"
        subject = "md5(v0)" if postgres else "v0"
        table = self.rules_table.name
        for ptype in SINGLE_VALUED_TYPES:
            name = f"{table}_one_{ptype}"
            try:
                with self.engine.connect() as conn, conn.begin():
                    if postgres:  # two processes creating it at once would clash in pg_class
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _FACT_INDEX_LOCK})
                    conn.exec_driver_sql(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table} "
                                         f"(domain_key, {subject}) WHERE ptype = '{ptype}'")
            except sa.exc.IntegrityError as exc:
                _log.warning("the store %s holds an account with two %r rules, so its unique index %s "
                             "cannot be created (%s): the domains concerned do not load until repaired",
                             self._url, ptype, name, _describe(exc, self._secret))

    def _create_schema(self) -> None:
        self.metadata.create_all(self.engine, tables=[t for t in self.metadata.sorted_tables
                                                      if t is not self.anchors_table])
        # The anchors table is created and filled in one write transaction, so no writer ever sees
        # it existing but empty for a domain that has records (it would refuse to write). Once it
        # exists, opening takes no write lock.
        if sa.inspect(self.engine).has_table(self.anchors_table.name):
            return
        with self.engine.connect() as base:
            conn = base.execution_options(salesauthz_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _ANCHOR_MIGRATION_LOCK})
                if not sa.inspect(conn).has_table(self.anchors_table.name):
                    self.anchors_table.create(conn)
                    self._anchor_existing_trails(conn)

    def _anchor_existing_trails(self, conn: Connection) -> None:
        """A database from before anchors: anchor each domain's trail where it now ends. Trust on
        first use — changes made before this moment are caught only by the links themselves or
        by a checkpoint taken earlier — so say so in the log."""
        audit = self.audit_table
        last = (sa.select(audit.c.domain_key, sa.func.max(audit.c.sequence).label("last"))
                .group_by(audit.c.domain_key).subquery())
        rows = conn.execute(
            sa.select(audit.c.domain_key, audit.c.sequence, audit.c.record)
            .join(last, sa.and_(audit.c.domain_key == last.c.domain_key, audit.c.sequence == last.c.last))
        ).all()
        anchors = []
        for key, sequence, text in rows:
            try:
                record = parse_record(text, domain=f"(domain key {key})", sequence=int(sequence))
            except AuditVerificationError as exc:
                _log.warning("%s: left unanchored (verify reports it)", exc)
                continue
            anchors.append(AuditAnchor.sealed(record.domain, record.sequence, record.hash,
                                              self.audit_keys.current))
        if anchors:
            self._write_anchors(conn, anchors)
            _log.warning("audit trails of %d domain(s) in %s anchored where they end now (first open "
                         "after upgrading): earlier removals from their ends cannot be detected, except "
                         "against checkpoints taken before", len(anchors), self._url)

    # -- the Adapter protocol --------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def audit_keys(self) -> AuditKeyring:
        """Resolved on first use, so a malformed ``SALESAUTHZ_AUDIT_KEY`` fails the first audited
        write or verification (:class:`~salesauthz.errors.AuditKeyError`, nothing written), not
        every reader of rules."""
        if self._keys is None:
            self._keys = AuditKeyring.of(self._audit_key)
        return self._keys

    def load(self, domains: Collection[str] | None = None) -> list[Rule]:
        if domains is not None and not domains:
            return []
        with self._guard("read the rules from"), self.engine.connect() as conn:
            return self._load_rules(conn, None if domains is None else sorted(set(domains)))

    def _load_rules(self, conn: Connection, domains: list[str] | None) -> list[Rule]:
        table = self.rules_table
        columns = [table.c.ptype, *(table.c[name] for name in VALUE_COLUMNS)]
        query = sa.select(*columns)
        if domains is not None:
            query = query.where(table.c.domain_key.in_([domain_key(d) for d in domains]))
        result = conn.execute(query)  # through SQLAlchemy: its events arm the call's deadline
        try:
            cursor = result.cursor
            if cursor is None:  # no DBAPI cursor to read from (not expected for a SELECT)
                return rows_to_rules(result)
            # The driver's own rows (plain tuples), in batches: building a SQLAlchemy Row per
            # rule costs about as much as reading it; a batch bounds the memory held at once.
            return rows_to_rules(row for batch in iter(lambda: cursor.fetchmany(LOAD_BATCH), [])
                                 for row in batch)
        finally:
            result.close()

    def load_versioned(self, domains: Collection[str] | None = None) -> Loaded:
        if domains is not None and not domains:
            return Loaded([], {})
        if self._tracks_own_writes:
            self._fold_external_changes()
        wanted = None if domains is None else sorted(set(domains))
        with self._guard("read the rules from"), self.engine.connect() as base:
            # One snapshot for both reads (as in read_audit).
            conn = base if self._sqlite else base.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                versions = self._select_versions(conn, wanted)
                rules = self._load_rules(conn, wanted)
        return Loaded(rules, versions)

    def commit(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> Commit:
        add = list(dict.fromkeys(added))
        remove = list(dict.fromkeys(removed))
        problems = [PolicyIssue(f"{p}: {r!r}") for r in add if (p := check_rule(r)) is not None]
        problems += [PolicyIssue(f"{p}: {r!r}") for r in remove if (p := check_rule(r)) is not None]
        if problems:
            raise PolicyError(problems)
        touched = sorted({domain_of(r) for r in (*add, *remove)} | {d.domain for d in audit})
        if not touched:
            return Commit()
        with self._guard("write to"), self.engine.connect() as base:
            conn = base.execution_options(salesauthz_write=True)
            with conn.begin():
                # SQLite: writes made outside salesauthz since the last fold become versions of
                # their own first, so that a compare-and-set below sees them.
                folded = self._fold_queue(conn) if self._tracks_own_writes else {}
                versions = self._bump_versions(conn, touched, expected)
                self._check_facts(conn, add, remove)
                sealed, anchors = self._seal(conn, audit)
                self._remove_rules(conn, remove)
                self._add_rules(conn, add)
                self._write_records(conn, sealed)
                self._write_anchors(conn, anchors)
                self._write_log(conn, versions, add, remove)
        self._notify({**folded, **versions})
        return Commit(sealed, versions)

    def changes(self, domain: str, after: int) -> ChangeFeed:
        if self._tracks_own_writes:
            self._fold_external_changes()
        table, key = self.changes_table, domain_key(domain)
        with self._guard("read the change log from"), self.engine.connect() as base:
            conn = base if self._sqlite else base.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                version = self._select_versions(conn, [domain]).get(domain, 0)
                rows = conn.execute(sa.select(table.c.version, table.c.payload)
                                    .where(table.c.domain_key == key, table.c.version > after,
                                           table.c.version <= version)
                                    .order_by(table.c.version)).all()
        changes: list[Change] = []
        for number, payload in rows:
            if payload is None:
                changes.append(Change(int(number), None, None))
                continue
            data = json.loads(payload)
            changes.append(Change(int(number), tuple(tuple(r) for r in data["a"]),
                                  tuple(tuple(r) for r in data["r"])))
        complete = (after <= version and [c.version for c in changes] == list(range(after + 1, version + 1))
                    and all(c.added is not None for c in changes))
        return ChangeFeed(version, tuple(changes), complete)

    def list_domains(self) -> list[str]:
        table = self.rules_table
        with self._guard("read the domains from"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.domain).distinct()).scalars()
            return sorted(rows)

    def load_audit(self, domain: str | None = None) -> list[AuditRecord]:
        with self._guard("read the audit trail from"), self.engine.connect() as conn:
            return self._select_records(conn, domain)

    def read_audit(self, domain: str | None = None) -> AuditSnapshot:
        with self._guard("read the audit trail from"), self.engine.connect() as base:
            # One snapshot for both reads: PostgreSQL needs REPEATABLE READ for that; a SQLite
            # transaction in WAL mode reads one snapshot from its first read on.
            conn = base if self._sqlite else base.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                records = self._select_records(conn, domain)
                anchors = self._select_anchors(conn, domain)
        return AuditSnapshot(tuple(records), anchors)

    def reanchor(self, draft: AuditDraft) -> AuditRecord:
        with self._guard("write to"), self.engine.connect() as base:
            conn = base.execution_options(salesauthz_write=True)
            with conn.begin():
                versions = self._bump_versions(conn, [draft.domain])  # the domain's writer lock
                sequence, previous = reanchor_end(draft.domain, self._last_record(conn, draft.domain),
                                                  self.audit_keys)
                key = self.audit_keys.current
                record = seal(draft, sequence + 1, previous, key)
                self._write_records(conn, [record])
                self._write_anchors(conn, [AuditAnchor.sealed(draft.domain, record.sequence, record.hash,
                                                              key)])
                self._write_log(conn, versions, (), ())
        self._notify(versions)
        return record

    def _select_records(self, conn: Connection, domain: str | None) -> list[AuditRecord]:
        table = self.audit_table
        query = sa.select(table.c.domain_key, table.c.sequence, table.c.record).order_by(table.c.id)
        if domain is not None:
            query = query.where(table.c.domain_key == domain_key(domain))
        records = []
        for key, sequence, text in conn.execute(query).all():
            try:
                records.append(parse_record(text, domain=domain or "", sequence=int(sequence)))
            except AuditVerificationError as exc:
                if domain is not None:
                    raise
                # Name the domain of a row that is no record: its version row holds the name.
                versions = self.versions_table
                name = conn.execute(sa.select(versions.c.domain).where(versions.c.domain_key == key)).scalar()
                raise AuditVerificationError(name or f"(domain key {key})", exc.sequence,
                                             exc.problem) from None
        # A domain key is a hash prefix: keep only the exact domain, however unlikely a clash.
        return [r for r in records if domain is None or r.domain == domain]

    def _select_anchors(self, conn: Connection, domain: str | None) -> dict[str, AuditAnchor]:
        table = self.anchors_table
        query = sa.select(table.c.domain, table.c.record_count, table.c.head, table.c.key_id, table.c.mac)
        if domain is not None:
            query = query.where(table.c.domain_key == domain_key(domain))
        # As for records: a domain key is a hash prefix, so keep only the exact domain.
        return {name: AuditAnchor(name, int(count), head, key_id, mac)
                for name, count, head, key_id, mac in conn.execute(query) if domain is None or name == domain}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.dispose()

    # -- versions and change listeners (the capability watchers use) ------------------------

    def versions(self, domains: Collection[str] | None = None) -> dict[str, int]:
        """``{domain: version}`` (domains never changed are absent: 0). Includes the changes
        made outside salesauthz (on SQLite, folded into version bumps here)."""
        if self._tracks_own_writes:
            self._fold_external_changes()
        with self._guard("read the versions from"), self.engine.connect() as conn:
            return self._select_versions(conn, None if domains is None else list(domains))

    def _select_versions(self, conn: Connection, domains: list[str] | None) -> dict[str, int]:
        table = self.versions_table
        query = sa.select(table.c.domain, table.c.version)
        if domains is not None:
            query = query.where(table.c.domain_key.in_([domain_key(d) for d in domains]))
        # A domain key is a hash prefix: keep only the exact domains asked for.
        return {domain: int(version) for domain, version in conn.execute(query)
                if domains is None or domain in domains}

    def _fold_external_changes(self) -> None:
        """SQLite: turn the domains queued by the triggers into version bumps (one transaction;
        a concurrent reader that folds at the same time finds the queue already empty)."""
        table = self.external_table
        with self._guard("read the changes made outside salesauthz in"), self.engine.connect() as conn:
            if conn.execute(sa.select(table.c.id).limit(1)).first() is None:
                return
        with self._guard("record the changes made outside salesauthz in"), \
                self.engine.connect() as base:
            conn = base.execution_options(salesauthz_write=True)
            with conn.begin():
                self._fold_queue(conn)

    def _fold_queue(self, conn: Connection) -> dict[str, int]:
        """SQLite, inside a write transaction: bump the version of each domain queued by the
        change triggers (no change-log entry: followers reload those domains)."""
        table = self.external_table
        queued = conn.execute(table.delete().returning(table.c.domain)).scalars().all()
        touched = sorted({domain for domain in queued if domain})
        return self._bump_versions(conn, touched) if touched else {}

    def add_commit_listener(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener({domain: version})`` after every committed change; returns a remover."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _notify(self, versions: dict[str, int]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(versions)

    # -- the write transaction -------------------------------------------------------------

    def _bump_versions(self, conn: Connection, domains: list[str],
                       expected: Mapping[str, int] | None = None) -> dict[str, int]:
        """Bump each domain's version (sorted, so two writers lock the rows in the same order and
        never deadlock); with ``expected``, raise :class:`ConflictError` (the caller's transaction
        rolls back) unless those domains were at those versions — compared under the row lock
        the bump holds until commit, so no other writer can slip in between."""
        table = self.versions_table
        insert = _dialect_insert(conn)
        bumped: dict[str, int] = {}
        for domain in domains:
            statement = (
                insert(table)
                .values(domain_key=domain_key(domain), domain=domain, version=1)
                .on_conflict_do_update(index_elements=[table.c.domain_key],
                                       set_={"version": table.c.version + 1})
                .returning(table.c.version)
            )
            bumped[domain] = int(conn.execute(statement).scalar_one())
            if expected is not None and domain in expected and bumped[domain] - 1 != expected[domain]:
                raise ConflictError(domain, expected=expected[domain], actual=bumped[domain] - 1,
                                    url=self._url)
        return bumped

    def _check_facts(self, conn: Connection, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
        """Refuse (:class:`PolicyError`) a change that would leave an account with two statuses,
        departments or parents: read the stored rows of each fact the change adds to, under the
        version rows' locks (every salesauthz writer of those domains waits for them)."""
        from salesauthz.models.validate import single_valued_key, stored_rule_issues

        wanted: dict[tuple[str, str], set[str]] = {}
        for rule in add:
            key = single_valued_key(rule)
            if key is not None:
                wanted.setdefault((key[0], key[1]), set()).add(key[2])
        if not wanted:
            return
        removing = set(remove)
        after = [r for (ptype, domain), accounts in sorted(wanted.items())
                 for r in self._single_valued_rows(conn, ptype, domain, sorted(accounts))
                 if r not in removing]
        after += [r for r in add if single_valued_key(r) is not None]
        issues = stored_rule_issues(after, self._url)
        if issues:
            raise PolicyError(issues)

    def _single_valued_rows(self, conn: Connection, ptype: str, domain: str,
                            accounts: list[str]) -> list[Rule]:
        """The stored ``ptype`` rules of ``accounts`` in ``domain`` (through the unique indexes)."""
        table = self.rules_table
        postgres = conn.dialect.name == "postgresql"
        found: list[Rule] = []
        for start in range(0, len(accounts), 500):
            chunk = accounts[start:start + 500]
            # The ptype as a literal, so that the partial indexes (WHERE ptype = 'p3') apply.
            condition = [table.c.ptype == sa.literal_column(f"'{ptype}'"),
                         table.c.domain_key == domain_key(domain), table.c.v0.in_(chunk)]
            if postgres:
                condition.append(sa.func.md5(table.c.v0).in_([sa.func.md5(a) for a in chunk]))
            rows = conn.execute(sa.select(table.c.ptype, *(table.c[c] for c in VALUE_COLUMNS))
                                .where(*condition))
            found += [r for r in rows_to_rules(rows) if r[1 + DOMAIN_FIELD[ptype]] == domain]
        return found

    def _write_log(self, conn: Connection, versions: Mapping[str, int], add: Sequence[Rule],
                   remove: Sequence[Rule]) -> None:
        """One change-log entry per domain the change bumped; prune what fell out of retention."""
        table = self.changes_table
        rows = []
        for domain, version in versions.items():
            domain_added = [r for r in add if domain_of(r) == domain]
            domain_removed = [r for r in remove if domain_of(r) == domain]
            payload = (json.dumps({"a": domain_added, "r": domain_removed}, ensure_ascii=False)
                       if len(domain_added) + len(domain_removed) <= LOG_MAX_RULES else None)
            rows.append({"domain_key": domain_key(domain), "version": version, "payload": payload})
            if version > self._retention:
                conn.execute(table.delete().where(table.c.domain_key == domain_key(domain),
                                                  table.c.version <= version - self._retention))
        if rows:
            conn.execute(table.insert(), rows)

    def _seal(self, conn: Connection, drafts: Sequence[AuditDraft],
              ) -> tuple[list[AuditRecord], list[AuditAnchor]]:
        """Number and chain the drafts after each domain's anchor (checked against the last stored
        record: see :func:`~salesauthz._audit_chain.chain_end`); the new anchors to write."""
        heads: dict[str, tuple[int, str]] = {}
        sealed: list[AuditRecord] = []
        if not drafts:  # a change of rules only: no key needed
            return sealed, []
        keys = self.audit_keys
        key = keys.current
        for draft in drafts:
            if draft.domain not in heads:
                anchors = self._select_anchors(conn, draft.domain)
                heads[draft.domain] = chain_end(draft.domain, anchors.get(draft.domain),
                                                self._last_record(conn, draft.domain), keys)
            sequence, previous = heads[draft.domain]
            record = seal(draft, sequence + 1, previous, key)
            heads[draft.domain] = (record.sequence, record.hash)
            sealed.append(record)
        return sealed, [AuditAnchor.sealed(d, count, head, key) for d, (count, head) in heads.items()]

    def _last_record(self, conn: Connection, domain: str) -> AuditRecord | None:
        table = self.audit_table
        row = conn.execute(
            sa.select(table.c.sequence, table.c.record)
            .where(table.c.domain_key == domain_key(domain))
            .order_by(table.c.sequence.desc()).limit(1)
        ).first()
        return None if row is None else parse_record(row[1], domain=domain, sequence=int(row[0]))

    def _write_records(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        if records:
            conn.execute(self.audit_table.insert(), [
                {"domain_key": domain_key(r.domain), "sequence": r.sequence, "hash": r.hash,
                 "record": r.to_json()} for r in records])

    def _write_anchors(self, conn: Connection, anchors: Sequence[AuditAnchor]) -> None:
        table = self.anchors_table
        insert = _dialect_insert(conn)
        for anchor in anchors:
            values = {"domain": anchor.domain, "record_count": anchor.count, "head": anchor.head,
                      "key_id": anchor.key_id, "mac": anchor.mac}
            conn.execute(insert(table).values(domain_key=domain_key(anchor.domain), **values)
                         .on_conflict_do_update(index_elements=[table.c.domain_key], set_=values))

    def _remove_rules(self, conn: Connection, rules: Sequence[Rule]) -> None:
        if rules:
            table = self.rules_table
            keys = [rule_key(r) for r in rules]
            for start in range(0, len(keys), 500):
                conn.execute(table.delete().where(table.c.rule_key.in_(keys[start:start + 500])))

    def _add_rules(self, conn: Connection, rules: Sequence[Rule]) -> None:
        if not rules:
            return
        # Plain DBAPI executemany with positional rows: bulk imports of a million rules spend
        # their time in the database, not in building per-row parameter dictionaries.
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        columns = ("rule_key", "domain_key", "domain", "ptype", *VALUE_COLUMNS)
        statement = (f"INSERT INTO {self.rules_table.name} ({', '.join(columns)}) "
                     f"VALUES ({', '.join([marker] * len(columns))}) ON CONFLICT DO NOTHING")
        padding = (None,) * len(VALUE_COLUMNS)
        domain_keys: dict[str, str] = {}
        rows = []
        for rule in rules:
            domain = domain_of(rule)
            key = domain_keys.get(domain)
            if key is None:
                key = domain_keys[domain] = domain_key(domain)
            rows.append((rule_key(rule), key, domain, *rule, *padding[len(rule) - 1:]))
        conn.exec_driver_sql(statement, rows)

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn driver errors into a :class:`StorageError` naming the store (password masked)."""
        if self._closed:
            raise StorageError(f"the store {self._url} is closed", url=self._url)
        deadline = self._deadline_of_thread()
        if deadline is not None and time.monotonic() >= deadline:
            raise StorageError(f"cannot {doing} store {self._url}: its deadline has passed",
                               url=self._url)
        status = _call_status(self._local)
        status.cut = False
        try:
            yield
        except (sa.exc.SQLAlchemyError, TimeoutError) as exc:
            reason = (f"no answer in time (the connection was given up: {_describe(exc, self._secret)})"
                      if status.cut or isinstance(exc, TimeoutError) else _describe(exc, self._secret))
            raise StorageError(f"cannot {doing} store {self._url}: {reason}", url=self._url) from exc


# -- writes made outside salesauthz --------------------------------------------------------------


def install_change_triggers(conn: Connection, table: str, domain_sql: Callable[[str], str]) -> None:
    """Install (or replace: idempotent) the triggers that make a write to the rules table
    ``table`` that salesauthz did not make — pycasbin on a shared ``casbin_rule`` table, a DBA's
    SQL — visible to the watchers as a version bump of each domain it touched.

    ``domain_sql(row)`` is the SQL expression of a row's domain, for ``row`` = ``"NEW."``,
    ``"OLD."`` or ``""`` (a column of a transition table); rows it maps to ``NULL`` (rule types
    salesauthz does not know) are ignored. Run inside the schema-creating transaction.

    * PostgreSQL (11 or later): statement-level triggers (one run per statement, not per row)
      bump the versions of the touched domains and ``NOTIFY`` each new version on the channel
      named by the ``salesauthz.channel`` setting (default ``salesauthz``); ``TRUNCATE`` bumps
      every domain. The function is ``SECURITY DEFINER`` with the installer's ``search_path``, so
      a foreign writer needs no rights on salesauthz's tables.
    * SQLite: row triggers queue the touched domain in ``salesauthz_external_changes``;
      :meth:`SQLAdapter.versions` folds the queue into version bumps (SQLite has no hash function
      to compute a domain key in SQL).

    salesauthz's own write transactions are skipped (they bump versions themselves): on
    PostgreSQL they set ``salesauthz.writer``, on SQLite they hold a row in
    ``salesauthz_own_writes`` (see :func:`_serialise_sqlite_writers`).
    """
    tag = hashlib.sha256(table.encode("utf-8")).hexdigest()[:12]
    quoted = conn.dialect.identifier_preparer.quote(table)
    if conn.dialect.name == "postgresql":
        _install_postgresql_triggers(conn, quoted, tag, domain_sql)
    elif conn.dialect.name == "sqlite":
        _install_sqlite_triggers(conn, quoted, tag, domain_sql)


def _install_sqlite_triggers(conn: Connection, table: str, tag: str,
                             domain_sql: Callable[[str], str]) -> None:
    queue = f"INSERT INTO {EXTERNAL_CHANGES_TABLE} (domain) VALUES"
    bodies = {
        "insert": f"{queue} ({domain_sql('NEW.')});",
        "update": f"{queue} ({domain_sql('OLD.')}), ({domain_sql('NEW.')});",
        "delete": f"{queue} ({domain_sql('OLD.')});",
    }
    for operation, body in bodies.items():
        name = f"salesauthz_external_{operation}_{tag}"
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name} AFTER {operation.upper()} ON {table} "
            f"WHEN NOT EXISTS (SELECT 1 FROM {OWN_WRITES_TABLE}) BEGIN {body} END")


def _install_postgresql_triggers(conn: Connection, table: str, tag: str,
                                 domain_sql: Callable[[str], str]) -> None:
    function = f"salesauthz_external_{tag}"
    domain = domain_sql("")
    # Two processes creating the schema at once would fail on CREATE OR REPLACE FUNCTION.
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock(x'{tag[:15]}'::bigint)")
    conn.exec_driver_sql(f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $body$
DECLARE
    touched text[];
    changed record;
    channel text := coalesce(nullif(current_setting('{CHANNEL_SETTING}', true), ''), 'salesauthz');
BEGIN
    IF current_setting('{OWN_WRITE_SETTING}', true) = 'on' THEN
        RETURN NULL;  -- salesauthz's own transaction: it bumps its versions itself
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT d) INTO touched FROM (SELECT {domain} AS d FROM new_rows) s;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT d) INTO touched FROM (SELECT {domain} AS d FROM old_rows) s;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT d) INTO touched FROM (
            SELECT {domain} AS d FROM old_rows UNION SELECT {domain} AS d FROM new_rows) s;
    ELSE  -- TRUNCATE
        SELECT array_agg(domain) INTO touched FROM salesauthz_versions;
    END IF;
    -- In code point order, as salesauthz's writers lock version rows: no deadlock between them.
    FOR changed IN
        INSERT INTO salesauthz_versions AS v (domain_key, domain, version)
        SELECT substr(encode(sha256(convert_to(d, 'UTF8')), 'hex'), 1, 32), d, 1
        FROM unnest(touched) AS d WHERE d IS NOT NULL ORDER BY d COLLATE "C"
        ON CONFLICT (domain_key) DO UPDATE SET version = v.version + 1
        RETURNING v.domain, v.version
    LOOP
        PERFORM pg_notify(channel, json_build_object('d', changed.domain, 'v', changed.version)::text);
    END LOOP;
    RETURN NULL;
END
$body$""")
    triggers = {
        "insert": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows",
        "delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows",
        "update": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "truncate": "AFTER TRUNCATE ON {t}",
    }
    for operation, when in triggers.items():
        name = f"salesauthz_external_{operation}_{tag}"
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        conn.exec_driver_sql(f"CREATE TRIGGER {name} {when.format(t=table)} "
                             f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")


def _dialect_insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class _CallStatus:
    """Per thread: whether the watchdog gave up the connection of the call in progress."""

    cut = False


def _call_status(local: threading.local) -> _CallStatus:
    status: _CallStatus | None = getattr(local, "status", None)
    if status is None:
        status = local.status = _CallStatus()
    return status


def _mark_postgresql_writers(engine: Engine) -> None:
    """PostgreSQL: salesauthz's write transactions set ``salesauthz.writer`` (transaction-local),
    so the change triggers leave them alone."""

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get("salesauthz_write", False):
            conn.exec_driver_sql(f"SELECT set_config('{OWN_WRITE_SETTING}', 'on', true)")


def _serialise_sqlite_writers(engine: Engine, store: SQLAdapter) -> None:
    """SQLite: write transactions start with ``BEGIN IMMEDIATE`` (take the write lock first, so
    two writers queue instead of failing on lock upgrade); WAL lets readers run meanwhile. They
    also hold a row in the own-writes table until just before they commit, which the change
    triggers read as "salesauthz is writing" (nobody else can be: the write lock is ours)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("salesauthz_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        if write and store._tracks_own_writes:
            conn.exec_driver_sql(f"INSERT INTO {OWN_WRITES_TABLE} (marker) VALUES (1)")

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        if conn.get_execution_options().get("salesauthz_write", False) and store._tracks_own_writes:
            conn.exec_driver_sql(f"DELETE FROM {OWN_WRITES_TABLE}")


def _describe(exc: BaseException, password: str | None) -> str:
    """The driver's own message, first line only (no SQL, no parameters), password removed."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    if password:
        text = text.replace(password, "***")
    return f"{type(original).__name__}: {text}"


def _password_of(url: str) -> str | None:
    try:
        return sa.engine.make_url(engine_url(url)).password
    except Exception:
        return None

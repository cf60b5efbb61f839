"""The shared adapter test suite (like cachetools' ``CacheTestMixin``): every store passes it.

A test module subclasses :class:`AdapterSuite` and provides the ``store`` fixture (a fresh, empty
store) and, where the store can be opened twice, ``reopen`` (a second handle on the same data,
as another process would hold, with the audit key given) and ``shared_url`` (the URL another
process opens it with).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, Record
from salesauthz._rules import Rule
from salesauthz.adapters.base import Adapter, Change, ChangeFeed
from salesauthz.audit import (
    KEY_ENV,
    RETIRED_KEYS_ENV,
    AuditAnchor,
    AuditCheckpoint,
    AuditDraft,
    AuditKey,
    AuditKeyring,
    AuditRecord,
    AuditTrail,
    find_break,
)
from salesauthz.errors import (
    AuditError,
    AuditKeyError,
    AuditVerificationError,
    ConflictError,
    EscalationError,
    PolicyError,
)
from salesauthz.models.loader import load_directory
from tests.conftest import POLICIES, examples

from ._audit_worker import append_records
from ._tamper import RawRow, Tamperer, anchor_for, relink, tamperer_for

HOSTILE = [
    "华东一组", "a,b", 'quote"d', "single'q", "new\nline", "tab\there", "ctl\x01\x1f\x7f",
    "; DROP TABLE x; --",
    "%s %(x)s ? :name $1", "back\\slash", "x" * 1000, "华" * 1000, " padded ", "*", "NULL", "",
]


def hostile_rules(domain: str) -> list[Rule]:
    """Rules whose values are every hostile identifier (a p rule per identifier, plus links)."""
    rules: list[Rule] = []
    for i, name in enumerate(n for n in HOSTILE if n):
        rules.append(("p", name, domain, "customer", "read", "own", ""))
        rules.append(("g", f"{name}#{i}", name, domain))
        rules.append(("p4", name, domain))
        rules.append(("g2", name, "", domain))
    rules.append(("p", "r", domain, "customer", "read", "all", "2030-01-01T00:00:00Z"))
    return rules


def draft(domain: str, target: str = "t", added: tuple[Rule, ...] = ()) -> AuditDraft:
    return AuditDraft(time=1_900_000_000.0, actor="admin", domain=domain, operation="grant",
                      target=target, added=added)


values = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
                 min_size=1, max_size=40)

KEY = "5a" * 32  # the deployment's audit key
OTHER_KEY = "c3" * 32  # a different deployment's key
FORGER = AuditKey("f0" * 32)  # a key made up by someone who lacks the real one
PLAIN = AuditKeyring()  # no key, whatever the environment says


# -- tampering moves --------------------------------------------------------------------------
#
# The trail under attack: "acme" holds 5 records (``saved`` is its records and anchor after the
# 3rd, as a database backup would hold them); "globex" holds 2. A checkpoint of acme was taken at
# record 5. ``forger`` is what the attacker seals with: nothing (plain SHA-256) on a plain trail,
# a key of its own on a keyed one.


@dataclass(frozen=True)
class Saved:
    records: list[AuditRecord]
    anchor: AuditAnchor | None


def _edit(records: list[AuditRecord], at: int) -> list[AuditRecord]:
    edited = list(records)
    edited[at] = dataclasses.replace(edited[at], target=edited[at].target + " (edited)")
    return edited


def _forged_after(records: list[AuditRecord], forger: AuditKey | None) -> list[AuditRecord]:
    fake = dataclasses.replace(records[-1], actor="intruder", target="intruder")
    return relink([*records, fake], len(records), forger)


def _anchor(t: Tamperer, d: str) -> AuditAnchor:
    anchor = t.anchor(d)
    assert anchor is not None
    return anchor


def edit_record(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, _edit(t.records(d), 2))


def edit_and_rehash(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, relink(_edit(t.records(d), 2), 2, forger))


def edit_rehash_and_anchor(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    forged = relink(_edit(t.records(d), 2), 2, forger)
    t.rewrite(d, forged)
    t.set_anchor(d, anchor_for(d, forged, forger))


def delete_last(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, t.records(d)[:-1])


def delete_last_and_anchor(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    kept = t.records(d)[:-1]
    t.rewrite(d, kept)
    t.set_anchor(d, anchor_for(d, kept, forger))


def delete_middle(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, [r for r in t.records(d) if r.sequence != 3])


def insert_record(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    records = t.records(d)
    forged = _forged_after(records[:2], forger)[2]  # correctly chained after record 2
    t.rewrite(d, [*records[:2], forged,
                  *(dataclasses.replace(r, sequence=r.sequence + 1) for r in records[2:])])


def reorder(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    records = t.records(d)
    t.rewrite(d, [records[i] for i in (0, 2, 1, 3, 4)])


def append_forged(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, _forged_after(t.records(d), forger))


def append_forged_and_anchor(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    forged = _forged_after(t.records(d), forger)
    t.rewrite(d, forged)
    t.set_anchor(d, anchor_for(d, forged, forger))


def anchor_count_lowered(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, dataclasses.replace(_anchor(t, d), count=4))


def anchor_count_raised(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, dataclasses.replace(_anchor(t, d), count=6))


def anchor_head_replaced(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, dataclasses.replace(_anchor(t, d), head=t.records(d)[1].hash))


def anchor_mac_replaced(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, dataclasses.replace(_anchor(t, d), mac="0" * 64))


def anchor_deleted(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, None)


def earlier_anchor_put_back(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, saved.anchor)


def other_domains_anchor(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.set_anchor(d, dataclasses.replace(_anchor(t, "globex"), domain=d))


def downgrade_to_plain(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    plain = relink(t.records(d), 0, None)
    t.rewrite(d, plain)
    t.set_anchor(d, anchor_for(d, plain, None))


def roll_back(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, saved.records)
    t.set_anchor(d, saved.anchor)


def delete_whole_trail(t: Tamperer, d: str, forger: AuditKey | None, saved: Saved) -> None:
    t.rewrite(d, [])
    t.set_anchor(d, None)


@dataclass(frozen=True)
class Move:
    """A tampering move and whether it is detected: ``(by verify(), against the checkpoint)`` on a
    plain trail and on a keyed one (``None``: the move does not apply)."""

    apply: Callable[[Tamperer, str, AuditKey | None, Saved], None]
    plain: tuple[bool, bool] | None
    keyed: tuple[bool, bool]


BOTH = (True, True)
MOVES: dict[str, Move] = {
    "edit a record": Move(edit_record, BOTH, BOTH),
    "edit a record and re-hash the rest": Move(edit_and_rehash, BOTH, BOTH),
    # Without a key, rewriting the records AND the anchor consistently is undetectable by design;
    # a checkpoint taken before still shows it.
    "edit, re-hash the rest and rewrite the anchor": Move(edit_rehash_and_anchor, (False, True), BOTH),
    "delete the last record": Move(delete_last, BOTH, BOTH),
    "delete the last record and rewrite the anchor": Move(delete_last_and_anchor, (False, True), BOTH),
    "delete a middle record": Move(delete_middle, BOTH, BOTH),
    "insert a record": Move(insert_record, BOTH, BOTH),
    "reorder two records": Move(reorder, BOTH, BOTH),
    "append a correctly chained record": Move(append_forged, BOTH, BOTH),
    # Records appended after the checkpoint with the anchor moved along: without a key nothing
    # tells (a checkpoint vouches only for what came before it).
    "append a record and rewrite the anchor": Move(append_forged_and_anchor, (False, False), BOTH),
    "anchor count lowered": Move(anchor_count_lowered, BOTH, BOTH),
    "anchor count raised": Move(anchor_count_raised, BOTH, BOTH),
    "anchor head replaced": Move(anchor_head_replaced, BOTH, BOTH),
    "anchor MAC replaced": Move(anchor_mac_replaced, None, BOTH),
    "anchor deleted": Move(anchor_deleted, BOTH, BOTH),
    "an earlier genuine anchor put back": Move(earlier_anchor_put_back, BOTH, BOTH),
    "another domain's anchor copied": Move(other_domains_anchor, BOTH, BOTH),
    "every record and the anchor downgraded to plain hashes": Move(downgrade_to_plain, None, BOTH),
    # Records and anchor restored from an earlier backup: a consistent, genuine earlier state that
    # only a checkpoint taken since can show, with or without a key.
    "trail and anchor rolled back to an earlier state": Move(roll_back, (False, True), (False, True)),
    "the whole trail and its anchor deleted": Move(delete_whole_trail, (False, True), (False, True)),
}
TAMPERING = [pytest.param(name, keyed, id=f"{'keyed' if keyed else 'plain'}: {name}")
             for name, move in MOVES.items() for keyed in (False, True)
             if (move.keyed if keyed else move.plain) is not None]


def write_trail(store: Adapter) -> Saved:
    """5 audited changes in acme (returning its state after the 3rd) and 2 in globex."""
    saved = Saved([], None)
    for n in range(1, 6):
        rule = ("p4", f"role-{n}", "acme")
        store.apply([rule], [], [draft("acme", f"t{n}", (rule,))])
        if n == 3:
            snapshot = store.read_audit("acme")
            saved = Saved(list(snapshot.records), snapshot.anchors["acme"])
    store.apply([("p4", "g", "globex")], [], [draft("globex", "g1"), draft("globex", "g2")])
    return saved


def audit_state(store: Adapter) -> tuple[object, ...]:
    snapshot = store.read_audit()
    versions = store.load_versioned().versions
    return sorted(store.load(), key=repr), snapshot.records, dict(snapshot.anchors), versions


def sample_rules() -> list[Rule]:
    """The bundled sample organisation (tenants acme and globex)."""
    return list(load_directory(POLICIES).rules)


# Rows a foreign writer can leave in a store: each must close its domain when loaded, named.
CORRUPT: dict[str, list[RawRow]] = {
    # frozen_1 is frozen in the sample: "last row wins" could make it active again.
    "two statuses": [("p3", "frozen_1", "acme", "active")],
    "two departments": [("g3", "rep_e2", "west-1", "acme")],
    "two parents": [("g4", "intern_e1", "lead_e1", "acme")],
    # pycasbin users omit the empty expiry: the row would grant rep_e2 delete forever.
    "a p row with 5 values": [("p", "rep_e2", "acme", "customer", "delete", "all", None)],
    "a NULL value": [("g", "rep_e2", None, "acme")],
    "a value past the rule's width": [("g3", "rep_w1", "west-1", "acme", "east")],
}
# What each case names besides its own rows (the row it contradicts).
CONTRADICTED: dict[str, list[Rule]] = {
    "two statuses": [("p3", "frozen_1", "acme", "frozen")],
    "two departments": [("g3", "rep_e2", "east-2", "acme")],
    "two parents": [("g4", "intern_e1", "mgr_east", "acme")],
}
FACTS: list[tuple[Rule, Rule]] = [
    (("p3", "u", "acme", "active"), ("p3", "u", "acme", "deactivated")),
    (("g3", "u", "east", "acme"), ("g3", "u", "west", "acme")),
    (("g4", "u", "boss", "acme"), ("g4", "u", "other-boss", "acme")),
]


class AdapterSuite:
    """Mixed into one test class per adapter."""

    @pytest.fixture
    def store(self) -> Iterator[Adapter]:  # pragma: no cover - always overridden
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _no_audit_key_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Stores read SALESAUTHZ_AUDIT_KEY by default: the suite decides keys itself.
        monkeypatch.delenv(KEY_ENV, raising=False)
        monkeypatch.delenv(RETIRED_KEYS_ENV, raising=False)

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        """Another handle on the same store, sealing with ``audit_key`` (the same object where
        that is all there is)."""
        return store

    def shared_url(self) -> str | None:
        """The URL another process opens this store with (``None``: in-process only)."""
        return None

    def with_log_retention(self, store: Adapter, retention: int) -> Adapter:  # pragma: no cover
        """A handle on an empty store of this kind that keeps ``retention`` change-log entries."""
        raise NotImplementedError

    # -- round trip ------------------------------------------------------------------------

    def test_empty_store(self, store: Adapter) -> None:
        assert store.load() == []
        assert store.load(["acme"]) == []
        assert store.list_domains() == []
        assert store.load_audit() == []
        assert "***" in store.url or ":" in store.url

    def test_round_trip_hostile_identifiers(self, store: Adapter) -> None:
        domains = ["华东一组", "a,b\n'\"; --", "x" * 1000]
        expected = [r for d in domains for r in hostile_rules(d)]
        store.apply(expected, [])
        assert sorted(store.load()) == sorted(expected)
        other = self.reopen(store)
        for domain in domains:
            assert sorted(other.load([domain])) == sorted(hostile_rules(domain))
        assert sorted(other.list_domains()) == sorted(domains)

    @settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.differing_executors])
    @given(names=st.lists(values, min_size=1, max_size=4, unique=True), domain=values)
    def test_round_trip_any_text(self, store: Adapter, names: list[str], domain: str) -> None:
        rules: list[Rule] = [("p4", name, domain) for name in names]
        rules += [("g", names[0], name, domain) for name in names]
        store.apply(rules, [])
        try:
            assert sorted(self.reopen(store).load([domain])) == sorted(rules)
        finally:
            store.apply([], rules)
        assert store.load([domain]) == []

    def test_set_semantics(self, store: Adapter) -> None:
        rule = ("p4", "manager", "acme")
        store.apply([rule, rule], [])
        store.apply([rule], [])
        assert store.load() == [rule]
        store.apply([], [("p4", "absent", "acme")])
        assert store.load() == [rule]
        store.apply([rule], [rule])  # removals first, then additions
        assert store.load() == [rule]
        store.apply([], [rule])
        assert store.load() == []

    def test_empty_string_is_kept_distinct_from_absent(self, store: Adapter) -> None:
        root = ("g2", "root", "", "acme")
        grant = ("p", "u", "acme", "customer", "read", "own", "")
        store.apply([root, grant], [])
        assert sorted(self.reopen(store).load(["acme"])) == sorted([root, grant])

    # -- atomic batches --------------------------------------------------------------------

    def test_invalid_batch_changes_nothing(self, store: Adapter) -> None:
        good = ("p4", "manager", "acme")
        store.apply([good], [], [draft("acme")])
        with pytest.raises(PolicyError):
            store.apply([("p4", "other", "acme"), ("p4", "bad\x00nul", "acme")], [good], [draft("acme")])
        with pytest.raises(PolicyError):
            store.apply([("zz", "x")], [])
        assert store.load() == [good]
        assert len(store.load_audit("acme")) == 1

    def test_batch_spanning_domains(self, store: Adapter) -> None:
        first = [("p4", "r1", "acme"), ("p4", "r2", "globex")]
        store.apply(first, [])
        store.apply([("p4", "r3", "acme")], [("p4", "r2", "globex")],
                    [draft("acme"), draft("globex")])
        assert sorted(store.load()) == [("p4", "r1", "acme"), ("p4", "r3", "acme")]
        assert [r.domain for r in store.load_audit()] == ["acme", "globex"]

    # -- filtered load ---------------------------------------------------------------------

    def test_filtered_load(self, store: Adapter) -> None:
        acme = hostile_rules("acme")
        globex: list[Rule] = [("p2", "globex", "customer", "read"), ("p3", "u", "globex", "active"),
                  ("g3", "u", "east", "globex"), ("g4", "u2", "u", "globex")]
        store.apply(acme + globex, [])
        assert sorted(store.load(["globex"])) == sorted(globex)
        assert sorted(store.load(["acme"])) == sorted(acme)
        assert sorted(store.load(["acme", "globex", "nowhere"])) == sorted(acme + globex)
        assert store.load([]) == []
        assert store.load(["nowhere"]) == []
        assert store.list_domains() == ["acme", "globex"]

    # -- concurrent writers ----------------------------------------------------------------

    @pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
    def test_concurrent_writers_keep_every_rule_and_one_audit_chain(self, store: Adapter, keyed: bool,
                                                                    ) -> None:
        threads, per_thread = 4, 6
        errors: list[BaseException] = []
        key = KEY if keyed else PLAIN
        first = self.reopen(store, audit_key=key)
        handles = [first if i % 2 == 0 else self.reopen(store, audit_key=key) for i in range(threads)]

        def write(worker: int) -> None:
            try:
                for n in range(per_thread):
                    rule = ("p4", f"role-{worker}-{n}", "acme")
                    handles[worker].apply([rule], [], [draft("acme", f"{worker}-{n}", (rule,))])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        # Meanwhile an auditor verifies again and again: it reads records and anchor in one
        # snapshot, so an append between the two reads never shows as a break.
        verifier = AuditTrail(self.reopen(store, audit_key=key))
        done = threading.Event()
        verified: list[int] = []

        def verify() -> None:
            try:
                while not done.is_set():
                    problems = verifier.problems("acme")
                    assert problems == [], problems
                    verified.append(1)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        watcher = threading.Thread(target=verify)
        watcher.start()
        workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        done.set()
        watcher.join(timeout=60)
        assert errors == []
        assert verified
        assert len(store.load(["acme"])) == threads * per_thread
        snapshot = first.read_audit("acme")
        audit = list(snapshot.records)
        assert [r.sequence for r in audit] == list(range(1, threads * per_thread + 1))
        assert find_break(audit, first.audit_keys) is None
        # The anchor moved in step with every append: it names the last record.
        assert (snapshot.anchors["acme"].count, snapshot.anchors["acme"].head) == (len(audit), audit[-1].hash)
        assert AuditTrail(first).verify(raise_on_failure=True)

    @pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
    def test_two_processes_keep_the_anchor_in_step(self, store: Adapter, keyed: bool) -> None:
        url = self.shared_url()
        if url is None:
            pytest.skip("an in-process store: no second process can open it")
        per_process = 25
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(2)
        workers = [context.Process(target=append_records,
                                   args=(url, "acme", f"p{i}", per_process, KEY if keyed else None, barrier))
                   for i in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0, 0]
        handle = self.reopen(store, audit_key=KEY if keyed else PLAIN)
        snapshot = handle.read_audit("acme")
        assert len(snapshot.records) == 2 * per_process
        assert {r.actor for r in snapshot.records} == {"p0", "p1"}
        assert snapshot.anchors["acme"].count == 2 * per_process
        assert AuditTrail(handle).verify(raise_on_failure=True)

    # -- audit -----------------------------------------------------------------------------

    def test_audit_chains_per_domain(self, store: Adapter) -> None:
        rule = ("p4", "华东一组", "acme")
        sealed = store.apply([rule], [], [draft("acme", "a", (rule,)), draft("globex", "g")])
        sealed += store.apply([], [rule], [draft("acme", "b")])
        assert [(r.domain, r.sequence) for r in sealed] == [("acme", 1), ("globex", 1), ("acme", 2)]
        assert sealed[2].previous_hash == sealed[0].hash
        again = self.reopen(store)
        assert again.load_audit() == sealed
        assert again.load_audit("acme") == [sealed[0], sealed[2]]
        assert again.load_audit("nowhere") == []
        assert find_break(again.load_audit()) is None
        assert again.load_audit("acme")[0].added == (rule,)

    def test_audit_only_change(self, store: Adapter) -> None:
        sealed = store.apply([], [], [draft("acme", "denied attempt")])
        assert [r.sequence for r in sealed] == [1]
        assert store.load() == []
        assert store.apply([], []) == []

    # -- anchors, keys, checkpoints ----------------------------------------------------------

    def test_anchor_is_written_with_the_records(self, store: Adapter) -> None:
        store.apply([("p4", "r", "acme")], [])  # no audit record: no anchor
        assert store.read_audit().anchors == {}
        sealed = store.apply([], [], [draft("acme"), draft("acme"), draft("globex")])
        snapshot = self.reopen(store).read_audit()
        assert snapshot.anchors == {"acme": AuditAnchor("acme", 2, sealed[1].hash),
                                    "globex": AuditAnchor("globex", 1, sealed[2].hash)}
        assert snapshot.records == tuple(sealed)
        assert snapshot.domains() == ["acme", "globex"]
        only = self.reopen(store).read_audit("globex")
        assert (only.records, dict(only.anchors)) == ((sealed[2],), {"globex": snapshot.anchors["globex"]})
        assert AuditTrail(store).verify(raise_on_failure=True)

    @pytest.mark.parametrize(("move", "keyed"), TAMPERING)
    def test_tampering(self, store: Adapter, move: str, keyed: bool) -> None:
        handle = self.reopen(store, audit_key=KEY if keyed else PLAIN)
        trail = AuditTrail(handle)
        saved = write_trail(handle)
        checkpoint = trail.checkpoint("acme")
        assert trail.verify(raise_on_failure=True)
        assert trail.verify("acme", checkpoint=checkpoint)
        expected = MOVES[move].keyed if keyed else MOVES[move].plain
        MOVES[move].apply(tamperer_for(handle), "acme", FORGER if keyed else None, saved)

        found = trail.problems()
        detected = (bool(found), not trail.verify(checkpoint=checkpoint))
        assert detected == expected
        assert [p.domain for p in found] == (["acme"] if found else [])
        assert trail.verify("globex")
        if found:
            with pytest.raises(AuditVerificationError) as caught:
                trail.verify(raise_on_failure=True)
            assert caught.value.domain == "acme"
            assert str(caught.value).startswith("audit trail of domain 'acme' is broken")

        # A legitimate write never hides what was detected: the store refuses it (and writes
        # nothing), or it goes ahead and the problem is still reported.
        before = audit_state(handle)
        rule: Rule = ("p4", "after", "acme")
        try:
            handle.apply([rule], [], [draft("acme", "after", (rule,))])
        except (AuditVerificationError, AuditKeyError):
            assert audit_state(handle) == before
        still = (not trail.verify(), not trail.verify("acme", checkpoint=checkpoint))
        assert [now or not then for now, then in zip(still, detected, strict=True)] == [True, True]

    def test_keyed_trail_round_trip(self, store: Adapter) -> None:
        key = AuditKey(KEY)
        keyed = self.reopen(store, audit_key=KEY)
        sealed = keyed.apply([], [], [draft("acme"), draft("acme")])
        assert [r.key_id for r in sealed] == [key.key_id, key.key_id]
        assert sealed[1].hash == sealed[1].compute_hash(key)
        assert sealed[1].hash != dataclasses.replace(sealed[1], key_id="").compute_hash()
        assert self.reopen(store).load_audit() == sealed  # key ids survive the store
        anchor = keyed.read_audit().anchors["acme"]
        assert anchor == AuditAnchor.sealed("acme", 2, sealed[1].hash, key)
        assert anchor.key_id == key.key_id
        assert len(anchor.mac) == 64
        trail = AuditTrail(keyed)
        checkpoint = trail.checkpoint("acme")
        assert (checkpoint.count, checkpoint.head, checkpoint.key_id) == (2, sealed[1].hash, key.key_id)
        document = checkpoint.to_json()
        keyed.apply([], [], [draft("acme")])
        assert trail.verify("acme", checkpoint=document)  # the trail still extends it
        assert AuditCheckpoint.from_json(document) == checkpoint
        # An altered checkpoint is refused by its signature.
        assert "signature does not match" in trail.problems(
            "acme", checkpoint=dataclasses.replace(checkpoint, count=1, head=sealed[0].hash))[0].problem
        # Verified with another key, or none: a clear error naming the key it needs.
        for keys in (AuditKeyring(AuditKey(OTHER_KEY)), PLAIN):
            problem = AuditTrail(keyed, keys=keys).problems("acme", checkpoint=checkpoint)[0]
            assert (problem.sequence, key.key_id in problem.problem) == (1, True)
            assert "not configured here" in problem.problem
        # Rotation: the new key seals, the retired one still verifies what it sealed.
        rotated = self.reopen(store, audit_key=AuditKeyring(AuditKey(OTHER_KEY), (key,)))
        rotated.apply([], [], [draft("acme")])
        assert [r.key_id for r in rotated.load_audit()] == [key.key_id] * 3 + [AuditKey(OTHER_KEY).key_id]
        assert AuditTrail(rotated).verify("acme", checkpoint=checkpoint)
        assert not AuditTrail(keyed).verify()  # the old key alone cannot vouch for the new record

    @pytest.mark.parametrize("option", [PLAIN, OTHER_KEY], ids=["no key", "another key"])
    def test_writer_without_the_key_refuses(self, store: Adapter, option: AuditKeyring | str) -> None:
        self.reopen(store, audit_key=KEY).apply([("p4", "a", "acme")], [], [draft("acme")])
        before = audit_state(store)
        other = self.reopen(store, audit_key=option)
        with pytest.raises(AuditKeyError) as caught:
            other.apply([("p4", "b", "acme")], [], [draft("acme")])
        assert caught.value.key_id == AuditKey(KEY).key_id
        assert KEY_ENV in str(caught.value)
        assert "nothing written" in str(caught.value)
        assert audit_state(store) == before
        other.apply([], [], [draft("globex")])  # another domain's trail is its own

    def test_reanchor_of_a_domain_without_a_trail(self, store: Adapter) -> None:
        record = AuditTrail(store).reanchor("acme", actor="ops", reason="start", at=1.0)
        assert (record.sequence, record.previous_hash) == (1, "0" * 64)
        assert record.detail == "start (was: no anchor, 0 record(s); it matched the trail)"
        assert AuditTrail(store).verify(raise_on_failure=True)

    def test_writer_without_a_key_refuses_a_replaced_plain_anchor(self, store: Adapter) -> None:
        keyed = self.reopen(store, audit_key=KEY)
        keyed.apply([], [], [draft("acme")])
        tamper = tamperer_for(keyed)
        tamper.set_anchor("acme", anchor_for("acme", tamper.records("acme"), None))
        before = audit_state(store)
        with pytest.raises(AuditVerificationError, match="anchor is not sealed with a key although its last"):
            store.apply([], [], [draft("acme")])
        assert audit_state(store) == before

    def test_reanchor_without_the_key_refuses(self, store: Adapter) -> None:
        self.reopen(store, audit_key=KEY).apply([], [], [draft("acme")])
        before = audit_state(store)
        with pytest.raises(AuditKeyError, match="nothing written"):  # it would continue unkeyed
            AuditTrail(store).reanchor("acme", actor="ops", reason="try")
        assert audit_state(store) == before

    def test_introducing_a_key_is_an_explicit_reanchor(self, store: Adapter) -> None:
        store.apply([], [], [draft("acme"), draft("acme")])
        keyed = self.reopen(store, audit_key=KEY)
        trail = AuditTrail(keyed)
        assert "not sealed with the configured key" in trail.problems()[0].problem
        with pytest.raises(AuditVerificationError, match="salesauthz audit anchor"):
            keyed.apply([("p4", "x", "acme")], [], [draft("acme")])
        record = trail.reanchor("acme", actor="ops", reason="audit key introduced", at=5.0)
        assert (record.sequence, record.operation, record.actor) == (3, "audit_reanchor", "ops")
        assert record.time == 5.0
        assert record.key_id == AuditKey(KEY).key_id
        assert "audit key introduced" in record.detail
        assert "anchor at record 2" in record.detail
        assert trail.verify(raise_on_failure=True)
        keyed.apply([("p4", "x", "acme")], [], [draft("acme"), draft("globex")])
        assert [r.key_id != "" for r in keyed.load_audit()] == [False, False, True, True, True]
        assert trail.verify(raise_on_failure=True)

    def test_reanchor_after_an_investigated_change(self, store: Adapter) -> None:
        write_trail(store)
        trail = AuditTrail(store)
        tamper = tamperer_for(store)
        delete_last(tamper, "acme", None, Saved([], None))
        with pytest.raises(AuditVerificationError, match="ends at record 4, its anchor at record 5"):
            store.apply([], [], [draft("acme")])
        record = trail.reanchor("acme", actor="ops", reason="record 5 lost in a restore, ticket 12")
        assert (record.sequence, record.previous_hash) == (5, store.load_audit("acme")[3].hash)
        assert "records were removed from its end" in record.detail
        assert trail.verify(raise_on_failure=True)
        store.apply([], [], [draft("acme")])  # writes go on
        # Re-anchoring accepts the end of the trail, not a break inside it.
        edit_record(tamper, "acme", None, Saved([], None))
        trail.reanchor("acme", actor="ops", reason="try")
        assert trail.problems()[0].problem == "its content does not match its hash"

    def test_checkpoint_round_trip_and_misuse(self, store: Adapter) -> None:
        trail = AuditTrail(store)
        empty = trail.checkpoint("acme")
        assert (empty.count, empty.head, empty.key_id, empty.signature) == (0, "0" * 64, "", "")
        store.apply([], [], [draft("acme"), draft("acme"), draft("acme")])
        assert trail.verify("acme", checkpoint=empty)
        checkpoint = trail.checkpoint("acme")
        assert AuditCheckpoint.from_json(checkpoint.to_json()) == checkpoint
        assert trail.verify(checkpoint=checkpoint)  # every domain, this one against the checkpoint
        with pytest.raises(AuditError, match="checkpoint is of domain 'acme', not 'globex'"):
            trail.verify("globex", checkpoint=checkpoint)
        # An unsigned checkpoint edited to claim a different head is caught by the head itself.
        assert "no longer extends" in trail.problems(
            checkpoint=dataclasses.replace(checkpoint, count=2))[0].problem
        # A signed checkpoint needs its key, even on a plain store.
        signed = AuditCheckpoint.make("acme", 3, checkpoint.head, AuditKey(KEY))
        assert "signed with key" in trail.problems("acme", checkpoint=signed)[0].problem
        assert AuditTrail(store, keys=AuditKeyring(None, (AuditKey(KEY),))).verify("acme", checkpoint=signed)
        forged = dataclasses.replace(checkpoint, signature="ab" * 32)  # a signature without a key id
        assert "signed with key (none)" in trail.problems("acme", checkpoint=forged)[0].problem
        # A broken trail gives no checkpoint.
        delete_last(tamperer_for(store), "acme", None, Saved([], None))
        with pytest.raises(AuditVerificationError, match="removed from its end"):
            trail.checkpoint("acme")

    # -- through the Authorizer ------------------------------------------------------------

    def test_authorizer_over_the_store(self, store: Adapter) -> None:
        rules: list[Rule] = [
            ("p2", "华东一组", "customer", "read"), ("p3", "o'brien,\n", "华东一组", "active"),
            ("p4", "rep", "华东一组"), ("g", "o'brien,\n", "rep", "华东一组"),
            ("p", "rep", "华东一组", "customer", "read", "all", ""),
        ]
        store.apply(rules, [])
        authz = Authorizer(self.reopen(store))
        record = Record("customer", owner="someone")
        assert authz.check("o'brien,\n", "read", record, domain="华东一组")
        authz.apply_changes(removed=[rules[-1]])
        assert not authz.check("o'brien,\n", "read", record, domain="华东一组")
        assert sorted(store.load()) == sorted(rules[:-1])

    # -- versions, compare-and-set, the change log (several app servers on one store) ----------

    def test_versions_and_compare_and_set(self, store: Adapter) -> None:
        first = store.commit([("p4", "a", "acme"), ("p4", "b", "globex")], [])
        assert (first.records, first.versions) == ([], {"acme": 1, "globex": 1})
        second = store.commit([], [("p4", "a", "acme")], [draft("acme")], expected={"acme": 1})
        assert second.versions == {"acme": 2}
        assert [r.sequence for r in second.records] == [1]
        other = self.reopen(store)
        assert other.load_versioned(["acme"]).rules == []
        assert other.load_versioned().versions == {"acme": 2, "globex": 1}
        before = audit_state(store)
        with pytest.raises(ConflictError) as caught:  # decided on version 1: the store moved on
            other.commit([("p4", "c", "acme")], [("p4", "b", "globex")], [draft("acme")],
                         expected={"acme": 1, "globex": 1})
        assert (caught.value.domain, caught.value.expected, caught.value.actual) == ("acme", 1, 2)
        assert isinstance(caught.value, RuntimeError)
        assert "nothing was written" in str(caught.value)
        assert audit_state(store) == before  # rules, records, anchors and versions
        # A domain never changed is at version 0; only one of two writers expecting it wins.
        store.commit([("p4", "x", "initech")], [], expected={"initech": 0})
        with pytest.raises(ConflictError):
            other.commit([("p4", "y", "initech")], [], expected={"initech": 0})
        assert store.load(["initech"]) == [("p4", "x", "initech")]
        # Audit-only changes move the version too (they are changes of the domain's trail).
        assert store.commit([], [], [draft("acme")], expected={"acme": 2}).versions == {"acme": 3}

    def test_change_log(self, store: Adapter) -> None:
        a, b, c = ("p4", "a", "acme"), ("p4", "b", "acme"), ("p4", "c", "acme")
        store.commit([a, b, a], [])
        store.commit([c], [a, ("p4", "z", "globex")])
        store.commit([], [], [draft("acme")])
        feed = self.reopen(store).changes("acme", 0)
        assert feed == ChangeFeed(3, (Change(1, (a, b), ()), Change(2, (c,), (a,)), Change(3, (), ())))
        assert store.changes("globex", 0) == ChangeFeed(1, (Change(1, (), (("p4", "z", "globex"),)),))
        assert store.changes("acme", 2) == ChangeFeed(3, (Change(3, (), ()),))
        assert store.changes("acme", 3) == ChangeFeed(3)
        assert store.changes("nowhere", 0) == ChangeFeed(0)
        assert not store.changes("acme", 4).complete  # a follower ahead of the store: reload

    def test_change_log_retention(self, store: Adapter) -> None:
        small = self.with_log_retention(store, 2)
        for n in range(4):
            small.commit([("p4", f"r{n}", "acme")], [])
        assert not small.changes("acme", 0).complete  # versions 1 and 2 are pruned: reload
        assert not small.changes("acme", 1).complete
        kept = small.changes("acme", 2)
        assert kept.complete
        assert [c.version for c in kept.changes] == [3, 4]

    def test_a_change_too_large_to_log_makes_followers_reload(self, store: Adapter,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("salesauthz.adapters.memory.LOG_MAX_RULES", 2)
        monkeypatch.setattr("salesauthz.adapters.sql.LOG_MAX_RULES", 2)
        store.commit([("p4", "a", "acme")], [])
        store.commit([("p4", "b", "acme"), ("p4", "c", "acme"), ("p4", "d", "acme")], [])
        feed = store.changes("acme", 0)
        assert feed.changes[1] == Change(2, None, None)
        assert not feed.complete
        assert store.changes("acme", 2).complete

    # -- single-valued facts -------------------------------------------------------------------

    @pytest.mark.parametrize(("fact", "other"), FACTS, ids=["status", "department", "parent"])
    def test_a_second_single_valued_fact_is_refused(self, store: Adapter, fact: Rule, other: Rule) -> None:
        store.apply([("p3", "u", "acme", "active"), fact], [], [draft("acme")])
        before = audit_state(store)
        for change in ([other], [other, ("p4", "fine", "acme")]):
            with pytest.raises(PolicyError) as caught:
                store.apply(change, [], [draft("acme")])
            assert caught.value.issues[0].code == "SA115"
            assert repr(fact) in str(caught.value)
            assert repr(other) in str(caught.value)
            assert audit_state(store) == before
        # Two of them in one change, for an account the store does not hold yet.
        with pytest.raises(PolicyError) as caught:
            store.apply([(fact[0], "new", *fact[2:]), (other[0], "new", *other[2:])], [])
        assert [i.code for i in caught.value.issues] == ["SA115"]
        assert audit_state(store) == before
        # A replacement in one change is what moving, freezing or reparenting does.
        store.apply([other], [fact], [draft("acme")])
        assert other in store.load(["acme"])
        assert fact not in store.load(["acme"])
        store.apply([fact], [fact, other])  # removals first: the same rule may come back
        assert fact in store.load(["acme"])

    def test_concurrent_writers_never_double_a_fact(self, store: Adapter) -> None:
        rounds = 8
        store.apply([("p3", f"u{i}", "acme", "active") for i in range(rounds)], [])
        handles = [self.reopen(store), self.reopen(store)]
        barrier = threading.Barrier(2, timeout=30)
        won: dict[tuple[int, int], bool] = {}
        errors: list[BaseException] = []

        def write(worker: int) -> None:
            status = ("frozen", "deactivated")[worker]
            for i in range(rounds):
                try:
                    barrier.wait()
                    # Both decided on "active": each replaces it with its own status.
                    handles[worker].apply([("p3", f"u{i}", "acme", status)],
                                          [("p3", f"u{i}", "acme", "active")])
                    won[(worker, i)] = True
                except PolicyError:
                    won[(worker, i)] = False
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        stored = store.load(["acme"])
        for i in range(rounds):
            assert won[(0, i)] != won[(1, i)], i  # exactly one of the two committed
            assert len([r for r in stored if r[:2] == ("p3", f"u{i}")]) == 1

    # -- through the Authorizer: decisions on stale rules, corrupt rows ---------------------

    def test_a_grant_decided_on_stale_rules_is_refused(self, store: Adapter) -> None:
        store.apply(sample_rules(), [])
        server_a = Authorizer(self.reopen(store))
        server_b = Authorizer(self.reopen(store))  # never told of A's change (no watcher)
        server_a.admin("alice", domain="acme").unassign_role("mgr_east", "sales_manager")
        view = server_b.account("mgr_east", domain="acme")
        assert view is not None
        assert "sales_manager" in view.roles  # B's rules are stale
        before = audit_state(store)
        with pytest.raises(EscalationError, match="may not manage"):
            server_b.admin("mgr_east", domain="acme").grant("rep_e2", "customer", ["read"],
                                                            scope="department_tree")
        assert audit_state(store) == before
        view = server_b.account("mgr_east", domain="acme")
        assert view is not None
        assert "sales_manager" not in view.roles  # decided again on the store's rules

    def test_a_conflict_with_an_unrelated_change_is_decided_again_and_commits(self, store: Adapter) -> None:
        store.apply(sample_rules(), [])
        server_a = Authorizer(self.reopen(store))
        server_b = Authorizer(self.reopen(store))
        server_a.admin("alice", domain="acme").freeze("rep_w1")
        record = server_b.admin("mgr_east", domain="acme").grant("rep_e2", "customer", ["read"],
                                                                 scope="team")
        assert record.operation == "grant"
        grant = ("p", "rep_e2", "acme", "customer", "read", "team", "")
        assert grant in store.load(["acme"])
        assert [r.operation for r in store.load_audit("acme")] == ["freeze", "grant"]
        # B holds the store's rules exactly: A's freeze included, its own grant applied once.
        assert server_b.rules("acme") == sorted(store.load(["acme"]))
        assert not server_b.check("rep_w1", "read", Record("customer", owner="rep_w1"), domain="acme")
        assert server_b.check("rep_e2", "read", Record("customer", owner="x", department="east-2"),
                              domain="acme")

    def test_conflicts_without_end_raise_after_the_bounded_retries(self, store: Adapter) -> None:
        store.apply(sample_rules(), [])
        server = Authorizer(self.reopen(store))
        meddler = self.reopen(store)
        attempts = [0]
        grant: Rule = ("p", "rep_e2", "acme", "customer", "export", "own", "")

        def plan(snapshot: object) -> tuple[list[Rule], list[Rule], list[AuditDraft]]:
            attempts[0] += 1
            # Another process commits while this one decides, every time.
            meddler.apply([("p4", f"meddled-{attempts[0]}", "acme")], [])
            return [grant], [], [draft("acme", "rep_e2", (grant,))]

        before = len(store.load_audit("acme"))
        with pytest.raises(ConflictError) as caught:
            server._transact("acme", plan)
        assert attempts[0] == caught.value.attempts == Authorizer.conflict_retries + 1
        assert grant not in store.load(["acme"])
        assert len(store.load_audit("acme")) == before
        assert "4 attempts" in str(caught.value)

    @pytest.mark.parametrize("case", list(CORRUPT))
    def test_corrupt_rows_fail_closed(self, store: Adapter, case: str) -> None:
        store.apply(sample_rules(), [])
        rows = CORRUPT[case]
        tamperer_for(store).insert_rows(rows)
        customer = Record("customer", owner="rep_e2", department="east-2")
        authz = Authorizer(self.reopen(store))
        # The domain is closed: even what the rules certainly allow is denied ...
        assert set(authz.quarantined) == {"acme"}
        assert not authz.check("alice", "read", customer, domain="acme")
        assert authz.domains() == ["globex"]  # ... and the other tenant serves.
        assert authz.check("g_admin", "read", Record("customer", owner="g_rep"), domain="globex")
        named = str(authz.quarantined["acme"])
        for row in [*rows, *CONTRADICTED.get(case, [])]:
            assert repr(row) in named
        with pytest.raises(PolicyError) as caught:
            authz.reload()
        assert str(caught.value) == named
        # Administration in that domain is refused too, naming the rows; nothing is written.
        before = audit_state(store)
        with pytest.raises(PolicyError, match=r"\(|SA1"):
            authz.admin("alice", domain="acme").freeze("rep_e1a")
        assert audit_state(store) == before
        if case in CONTRADICTED:  # repaired through the raw API: the domain opens again
            authz.apply_changes(removed=[tuple(str(v) for v in rows[0])])
            assert authz.quarantined == {}
            assert authz.check("alice", "read", customer, domain="acme")

    def test_a_row_without_a_domain_is_reported_and_closes_no_domain(self, store: Adapter) -> None:
        store.apply(sample_rules(), [])
        row: RawRow = ("g", "rep_e2", "sales_manager", None)
        tamperer_for(store).insert_rows([row])
        authz = Authorizer(self.reopen(store))
        assert list(authz.quarantined) == [""]  # it belongs to no domain it could open
        assert repr(row) in str(authz.quarantined[""])
        assert authz.domains() == ["acme", "globex"]
        assert not authz.check("rep_e2", "read", Record("customer", owner="rep_w1", department="west-1"),
                               domain="acme")

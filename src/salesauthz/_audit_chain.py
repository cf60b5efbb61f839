"""Audit records, their per-domain chain, anchors, keys and checkpoints — the values and the pure
checks over them, with no storage.

A leaf module: it imports only the error tree and the rule type, so the stores
(``salesauthz.adapters``) seal records with it while :mod:`salesauthz.audit` (the trail *over* a
store) imports the stores — no import cycle.

How the pieces protect each other:

* each record carries the link (``hash``) of the record before it, and its own link covers its
  content and that previous link: a SHA-256 hash, or — when the deployment configures a key — an
  HMAC-SHA256 under that key, named by ``key_id``;
* per domain the store keeps an **anchor** (record count, head link, and an HMAC of both when keyed),
  written in the same transaction as the records and the domain's version row: removing records
  from the end or appending records is visible against it;
* a **checkpoint** (domain, count, head, time, optionally signed) is kept by an auditor outside the
  database: a trail rolled back, or rewritten up to that point, no longer extends it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from salesauthz._rules import Rule
from salesauthz.errors import AuditError, AuditKeyError, AuditVerificationError

__all__ = [
    "CHECKPOINT_FORMAT",
    "GENESIS",
    "KEY_ENV",
    "RETIRED_KEYS_ENV",
    "AuditAnchor",
    "AuditCheckpoint",
    "AuditDraft",
    "AuditKey",
    "AuditKeyOption",
    "AuditKeyring",
    "AuditRecord",
    "AuditSnapshot",
    "anchor_problem",
    "chain_end",
    "chain_problem",
    "checkpoint_problem",
    "find_break",
    "parse_record",
    "reanchor_end",
    "seal",
    "trail_problem",
]

GENESIS = "0" * 64
"""The ``previous_hash`` of the first record of a domain (and the head of an empty trail)."""

KEY_ENV = "SALESAUTHZ_AUDIT_KEY"
"""The environment variable holding the deployment's current audit key."""

RETIRED_KEYS_ENV = "SALESAUTHZ_AUDIT_RETIRED_KEYS"
"""Earlier keys (comma- or space-separated), kept to verify what they sealed after a rotation."""

CHECKPOINT_FORMAT = "salesauthz-audit-checkpoint/1"

MIN_KEY_BYTES = 32  # RFC 2104: a key shorter than the hash output weakens the MAC
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# -- keys -----------------------------------------------------------------------------------


class AuditKey:
    """A secret for HMAC-SHA256 links, anchors and checkpoint signatures.

    ``key_id`` (16 hex digits derived from the secret, revealing nothing of it) is written next to
    everything the key seals, so a verifier knows which key to use and says which one is missing.
    """

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_KEY_BYTES:
            raise AuditKeyError(
                f"an audit key needs at least {MIN_KEY_BYTES} bytes, this one has {len(raw)}: generate "
                "one with `python -c \"import secrets; print(secrets.token_hex(32))\"`")
        self._secret = raw
        self.key_id = hmac.new(raw, b"salesauthz audit key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, payload: str) -> str:
        """HMAC-SHA256 of ``payload`` (hex)."""
        return hmac.new(self._secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the secret
        return f"AuditKey(key_id={self.key_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)


@dataclass(frozen=True, slots=True)
class AuditKeyring:
    """The key that seals new records (``current``; ``None``: plain SHA-256 links) and the
    ``retired`` keys still accepted when verifying what they sealed before a rotation."""

    current: AuditKey | None = None
    retired: tuple[AuditKey, ...] = ()

    def find(self, key_id: str) -> AuditKey | None:
        """The configured key with this id, current or retired."""
        for key in (self.current, *self.retired):
            if key is not None and key.key_id == key_id:
                return key
        return None

    def describe(self) -> str:
        """The configured key ids, for error messages."""
        ids = [k.key_id for k in (self.current, *self.retired) if k is not None]
        return "configured: " + ", ".join(ids) if ids else "no audit key is configured"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditKeyring:
        """The keys of ``SALESAUTHZ_AUDIT_KEY`` and ``SALESAUTHZ_AUDIT_RETIRED_KEYS`` (empty: none)."""
        env = os.environ if environ is None else environ
        keys: dict[str, list[AuditKey]] = {}
        for name in (KEY_ENV, RETIRED_KEYS_ENV):
            texts = [t for t in re.split(r"[\s,]+", env.get(name, "").strip()) if t]
            if name == KEY_ENV:  # one key: any spaces or commas inside it are part of it
                texts = [env[name].strip()] if texts else []
            try:
                keys[name] = [AuditKey(t) for t in texts]
            except AuditKeyError as exc:
                raise AuditKeyError(f"{name}: {exc}") from None
        return cls(next(iter(keys[KEY_ENV]), None), tuple(keys[RETIRED_KEYS_ENV]))

    @classmethod
    def of(cls, option: AuditKeyOption) -> AuditKeyring:
        """A keyring from a store's ``audit_key`` option: ``None`` reads the environment; a key
        (or its text) becomes the current key; a keyring is taken as is (``AuditKeyring()``: no key,
        whatever the environment says)."""
        if option is None:
            return cls.from_env()
        if isinstance(option, AuditKeyring):
            return option
        if isinstance(option, AuditKey):
            return cls(option)
        return cls(AuditKey(option))


AuditKeyOption = AuditKeyring | AuditKey | str | bytes | None
"""What a store's ``audit_key`` option accepts (see :meth:`AuditKeyring.of`)."""


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """An audit record before the store numbers and chains it."""

    time: float
    actor: str
    domain: str
    operation: str
    target: str
    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    escalated: bool = False
    outcome: str = "applied"  # or "denied"
    detail: str = ""
    assurance: int | None = None  # the actor's session assurance (mfa level), when known


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One sealed audit record.

    ``hash`` is the record's link: SHA-256 over every other field (``previous_hash`` included), or,
    when ``key_id`` names a key, HMAC-SHA256 under that key over every other field (``key_id``
    included, so a keyed record cannot pass for a plain one).
    """

    sequence: int
    time: float
    actor: str
    domain: str
    operation: str
    target: str
    added: tuple[Rule, ...]
    removed: tuple[Rule, ...]
    escalated: bool
    outcome: str
    detail: str
    previous_hash: str
    hash: str = field(default="")
    key_id: str = field(default="")
    # The actor's session assurance when the change was made (0: one factor; 1: a second
    # factor; higher: the acr level), ``None`` when not known. Left out of the payload and the
    # JSON when ``None``, so records of earlier versions hash and read as they always did.
    assurance: int | None = field(default=None)

    def payload(self) -> str:
        """The canonical text the link covers (records written before keys existed hash the
        same text as they always did: an empty ``key_id`` is left out)."""
        body = asdict(self)
        body.pop("hash")
        if not self.key_id:
            body.pop("key_id")
        if self.assurance is None:
            body.pop("assurance")
        return _canonical(body)

    def compute_hash(self, key: AuditKey | None = None) -> str:
        """The link this record's content calls for (a keyed record needs its key)."""
        if not self.key_id:
            return hashlib.sha256(self.payload().encode("utf-8")).hexdigest()
        if key is None or key.key_id != self.key_id:
            raise AuditKeyError(f"record {self.sequence} of domain {self.domain!r} is sealed with key "
                                f"{self.key_id}, not given here", key_id=self.key_id)
        return key.mac(self.payload())

    def to_json(self) -> str:
        data = asdict(self)
        if not self.key_id:
            data.pop("key_id")  # byte-identical to records of earlier versions
        if self.assurance is None:
            data.pop("assurance")
        return _canonical(data)

    @classmethod
    def from_json(cls, text: str) -> AuditRecord:
        data = json.loads(text)
        data["added"] = tuple(tuple(r) for r in data["added"])
        data["removed"] = tuple(tuple(r) for r in data["removed"])
        return cls(**data)


def parse_record(text: str, *, domain: str, sequence: int) -> AuditRecord:
    """A stored record's JSON, or an :class:`AuditVerificationError` naming it if the row was
    replaced by something that is not a record."""
    try:
        return AuditRecord.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        problem = f"the stored row is not an audit record ({type(exc).__name__})"
        raise AuditVerificationError(domain, sequence, problem) from None


def seal(draft: AuditDraft, sequence: int, previous_hash: str, key: AuditKey | None = None) -> AuditRecord:
    """Number and chain a draft (called by stores inside their write transaction); with ``key``
    the link is an HMAC under it."""
    record = AuditRecord(sequence, draft.time, draft.actor, draft.domain, draft.operation,
                         draft.target, tuple(tuple(r) for r in draft.added),
                         tuple(tuple(r) for r in draft.removed), draft.escalated, draft.outcome,
                         draft.detail, previous_hash, key_id=key.key_id if key is not None else "",
                         assurance=draft.assurance)
    return _with_hash(record, record.compute_hash(key))


def _with_hash(record: AuditRecord, link: str) -> AuditRecord:
    return AuditRecord(record.sequence, record.time, record.actor, record.domain, record.operation,
                       record.target, record.added, record.removed, record.escalated, record.outcome,
                       record.detail, record.previous_hash, link, record.key_id, record.assurance)


# -- anchors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditAnchor:
    """What the store keeps per domain beside the trail: how many records it holds and the link of
    the last one; with a key, ``mac`` seals both (and the domain) under ``key_id``."""

    domain: str
    count: int
    head: str
    key_id: str = ""
    mac: str = ""

    def payload(self) -> str:
        return _canonical({"anchor": self.domain, "count": self.count, "head": self.head,
                           "key_id": self.key_id})

    @classmethod
    def sealed(cls, domain: str, count: int, head: str, key: AuditKey | None) -> AuditAnchor:
        """The anchor of a trail ending at record ``count`` with link ``head``."""
        if key is None:
            return cls(domain, count, head)
        unsigned = cls(domain, count, head, key.key_id)
        return cls(domain, count, head, key.key_id, key.mac(unsigned.payload()))


@dataclass(frozen=True, slots=True)
class AuditSnapshot:
    """The records (in stored order) and the anchors of a store, read in one consistent snapshot."""

    records: tuple[AuditRecord, ...]
    anchors: Mapping[str, AuditAnchor]

    def domains(self) -> list[str]:
        """Every domain with records or an anchor."""
        return sorted({r.domain for r in self.records} | set(self.anchors))

    def records_of(self, domain: str) -> list[AuditRecord]:
        return [r for r in self.records if r.domain == domain]


def chain_end(domain: str, anchor: AuditAnchor | None, last: AuditRecord | None,
              keys: AuditKeyring) -> tuple[int, str]:
    """Where a writer continues ``domain``'s trail: ``(count, head)`` from its anchor, after checking
    that the stored trail still ends there — a writer must not seal on top of a trail changed behind
    its back (that would re-anchor the change and hide it). Raises
    :class:`AuditVerificationError` or :class:`AuditKeyError`; the caller then writes nothing."""
    advice = ("nothing written; inspect it with `salesauthz audit verify`, and once resolved "
              "re-anchor it with `salesauthz audit anchor`")
    if anchor is None:
        if last is None:
            return 0, GENESIS
        raise AuditVerificationError(domain, None, f"its records (up to {last.sequence}) have no anchor: "
                                                   f"the anchor was deleted; {advice}")
    if last is None or anchor.count != last.sequence or anchor.head != last.hash:
        ends = f"record {last.sequence}" if last is not None else "no record"
        raise AuditVerificationError(domain, None, f"the trail ends at {ends}, its anchor at record "
                                     f"{anchor.count}: it was changed outside salesauthz; {advice}")
    if anchor.key_id:
        key = keys.find(anchor.key_id)
        if key is None:
            raise AuditKeyError(
                f"the audit trail of domain {domain!r} is sealed with key {anchor.key_id}, which this "
                f"process does not have ({keys.describe()}): set {KEY_ENV} (or list the key in "
                f"{RETIRED_KEYS_ENV}); nothing written", key_id=anchor.key_id)
        if not hmac.compare_digest(anchor.mac, AuditAnchor.sealed(domain, anchor.count, anchor.head,
                                                                   key).mac):
            raise AuditVerificationError(domain, None, f"its anchor's MAC does not match: {advice}")
    elif keys.current is not None:
        # Exactly what verify() rejects: a trail rewritten wholesale as plain records with a plain
        # anchor looks like one written before the key was configured. Sealing on top of it would
        # hide the rewrite, so the key's introduction is an explicit re-anchoring instead.
        raise AuditVerificationError(
            domain, None, f"its anchor is not sealed with the configured key {keys.current.key_id}: it "
            "was written before the key was configured, or replaced; nothing written. Seal it once with "
            "`salesauthz audit anchor` (after checking the trail against your last checkpoint)")
    elif last.key_id:
        raise AuditVerificationError(domain, None, "its anchor is not sealed with a key although its "
                                                   f"last record is: the anchor was replaced; {advice}")
    return anchor.count, anchor.head


def reanchor_end(domain: str, last: AuditRecord | None, keys: AuditKeyring) -> tuple[int, str]:
    """Where a re-anchoring record goes: after the last *stored* record, whatever the anchor says.
    Refused (:class:`AuditKeyError`) when that record is keyed and this process has no key: the
    trail would continue unkeyed."""
    if last is None:
        return 0, GENESIS
    if last.key_id and keys.current is None and keys.find(last.key_id) is None:
        raise AuditKeyError(f"the audit trail of domain {domain!r} is sealed with key {last.key_id}, "
                            f"which this process does not have ({keys.describe()}): set {KEY_ENV}; "
                            "nothing written", key_id=last.key_id)
    return last.sequence, last.hash


# -- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """A domain's trail at one moment, to keep outside the database: ``count`` records ending with
    link ``head``. With a key, ``signature`` (HMAC-SHA256 under ``key_id``) proves who made it."""

    domain: str
    count: int
    head: str
    time: str
    key_id: str = ""
    signature: str = ""

    def payload(self) -> str:
        return _canonical({"format": CHECKPOINT_FORMAT, "domain": self.domain, "count": self.count,
                           "head": self.head, "time": self.time, "key_id": self.key_id})

    @classmethod
    def make(cls, domain: str, count: int, head: str, key: AuditKey | None,
             now: datetime | None = None) -> AuditCheckpoint:
        moment = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        moment = moment.replace("+00:00", "Z")
        if key is None:
            return cls(domain, count, head, moment)
        unsigned = cls(domain, count, head, moment, key.key_id)
        return cls(domain, count, head, moment, key.key_id, key.mac(unsigned.payload()))

    def to_json(self) -> str:
        """The checkpoint document (JSON, one object)."""
        data: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "domain": self.domain, "count": self.count,
                                "head": self.head, "time": self.time}
        if self.key_id:
            data["key_id"] = self.key_id
            data["signature"] = self.signature
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_data(cls, data: object) -> AuditCheckpoint:
        """A checkpoint from its parsed JSON; :class:`AuditError` says what is wrong with it."""
        if not isinstance(data, dict):
            raise AuditError("not an audit checkpoint: expected a JSON object")
        if data.get("format") != CHECKPOINT_FORMAT:
            raise AuditError(f"not an audit checkpoint: 'format' must be {CHECKPOINT_FORMAT!r}")
        domain, count, head, moment = (data.get(k) for k in ("domain", "count", "head", "time"))
        key_id, signature = data.get("key_id", ""), data.get("signature", "")
        if not isinstance(domain, str):
            raise AuditError("audit checkpoint: 'domain' must be a string")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise AuditError(f"audit checkpoint of {domain!r}: 'count' must be a whole number >= 0")
        if not isinstance(head, str) or not _HEX64.match(head):
            raise AuditError(f"audit checkpoint of {domain!r}: 'head' must be 64 hex digits")
        if not isinstance(moment, str) or not isinstance(key_id, str) or not isinstance(signature, str):
            raise AuditError(f"audit checkpoint of {domain!r}: 'time', 'key_id' and 'signature' must "
                             "be strings")
        return cls(domain, count, head, moment, key_id, signature)

    @classmethod
    def from_json(cls, text: str) -> AuditCheckpoint:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AuditError(f"not an audit checkpoint: invalid JSON ({exc})") from None
        return cls.from_data(data)


# -- the checks -----------------------------------------------------------------------------


def chain_problem(domain: str, records: Sequence[AuditRecord], keys: AuditKeyring,
                  ) -> AuditVerificationError | None:
    """The first break in one domain's chain: numbers 1, 2, 3 …, each link matching its content
    (under the configured key for a keyed record) and naming the link before it."""
    previous = GENESIS
    keyed_at: int | None = None
    for position, record in enumerate(records, start=1):
        if record.sequence != position:
            return AuditVerificationError(domain, record.sequence, f"expected record {position} here")
        if record.previous_hash != previous:
            return AuditVerificationError(domain, record.sequence, "does not chain to the record before it")
        if record.key_id:
            key = keys.find(record.key_id)
            if key is None:
                return AuditVerificationError(
                    domain, record.sequence, f"it is sealed with key {record.key_id}, which is not "
                    f"configured here ({keys.describe()}): verify with the key that sealed it")
            if not hmac.compare_digest(record.hash, record.compute_hash(key)):
                return AuditVerificationError(domain, record.sequence,
                                              "its content does not match its MAC")
            keyed_at = record.sequence
        else:
            if keyed_at is not None and keys.current is not None:
                return AuditVerificationError(
                    domain, record.sequence, f"it is not sealed with a key although record {keyed_at} "
                    "before it is: a forged or downgraded record")
            if record.hash != record.compute_hash():
                return AuditVerificationError(domain, record.sequence, "its content does not match its hash")
        previous = record.hash
    return None


def anchor_problem(domain: str, records: Sequence[AuditRecord], anchor: AuditAnchor | None,
                   keys: AuditKeyring) -> AuditVerificationError | None:
    """Whether the trail ends where its anchor says (and, keyed, the anchor is genuine)."""
    count = len(records)
    head = records[-1].hash if records else GENESIS
    if anchor is None:
        if records:
            return AuditVerificationError(domain, None, f"its {count} record(s) have no anchor: the "
                                                        "anchor was deleted")
        return None
    if anchor.count > count:
        return AuditVerificationError(domain, count + 1, f"its anchor says {anchor.count} record(s), the "
                                      f"trail holds {count}: records were removed from its end")
    if anchor.count < count:
        return AuditVerificationError(domain, anchor.count + 1, f"the trail holds {count} records, its "
                                      f"anchor says {anchor.count}: records were appended outside salesauthz")
    if anchor.head != head:
        return AuditVerificationError(domain, count or None, "its anchor's head does not match the last "
                                      "record: the anchor or the record was replaced")
    if anchor.key_id:
        key = keys.find(anchor.key_id)
        if key is None:
            return AuditVerificationError(domain, None, f"its anchor is sealed with key {anchor.key_id}, "
                                          f"which is not configured here ({keys.describe()})")
        expected = AuditAnchor.sealed(domain, anchor.count, anchor.head, key).mac
        if not hmac.compare_digest(anchor.mac, expected):
            return AuditVerificationError(domain, None, "its anchor's MAC does not match: the anchor "
                                                        "was changed outside salesauthz")
    elif keys.current is not None:
        return AuditVerificationError(
            domain, None, f"its anchor is not sealed with the configured key {keys.current.key_id}: it was "
            "written before the key was configured (seal it with `salesauthz audit anchor`), or replaced")
    return None


def checkpoint_problem(domain: str, records: Sequence[AuditRecord], checkpoint: AuditCheckpoint,
                       keys: AuditKeyring) -> AuditVerificationError | None:
    """Whether the trail still extends ``checkpoint``: its record ``count`` has link ``head``. With
    :func:`chain_problem` passing too, nothing up to the checkpoint was changed or removed."""
    if checkpoint.domain != domain:
        return AuditVerificationError(domain, None, f"the checkpoint is of domain {checkpoint.domain!r}")
    if checkpoint.key_id or checkpoint.signature:
        key = keys.find(checkpoint.key_id)
        if key is None:
            return AuditVerificationError(domain, None, f"the checkpoint is signed with key "
                                          f"{checkpoint.key_id or '(none)'}, which is not configured "
                                          f"here ({keys.describe()})")
        expected = AuditCheckpoint(checkpoint.domain, checkpoint.count, checkpoint.head, checkpoint.time,
                                   key.key_id)
        if not hmac.compare_digest(checkpoint.signature, key.mac(expected.payload())):
            return AuditVerificationError(domain, None, "the checkpoint's signature does not match: the "
                                                        "checkpoint was altered")
    if checkpoint.count > len(records):
        return AuditVerificationError(domain, len(records) + 1, f"the checkpoint of {checkpoint.time} "
                                      f"covers {checkpoint.count} record(s), the trail holds {len(records)}: "
                                      "records were removed or the trail was rolled back")
    head = records[checkpoint.count - 1].hash if checkpoint.count else GENESIS
    if head != checkpoint.head:
        return AuditVerificationError(domain, checkpoint.count or None, f"the trail no longer extends the "
                                      f"checkpoint of {checkpoint.time}: it was rewritten up to record "
                                      f"{checkpoint.count}")
    return None


def trail_problem(domain: str, records: Sequence[AuditRecord], anchor: AuditAnchor | None,
                  keys: AuditKeyring, checkpoint: AuditCheckpoint | None = None,
                  ) -> AuditVerificationError | None:
    """The first problem of one domain's trail: its chain, then its anchor, then the checkpoint."""
    return (chain_problem(domain, records, keys)
            or anchor_problem(domain, records, anchor, keys)
            or (checkpoint_problem(domain, records, checkpoint, keys) if checkpoint is not None else None))


def find_break(records: Iterable[AuditRecord], keys: AuditKeyring | None = None,
               ) -> tuple[str, int, str] | None:
    """The first ``(domain, sequence, problem)`` where the chains of ``records`` break, or ``None``.

    Links only: a chain cut short at its end is still a valid chain here. The anchor is what shows
    that records are missing from the end — see :meth:`salesauthz.audit.AuditTrail.verify`.
    """
    by_domain: dict[str, list[AuditRecord]] = {}
    for record in records:
        by_domain.setdefault(record.domain, []).append(record)
    for domain, chain in by_domain.items():
        problem = chain_problem(domain, chain, keys or AuditKeyring())
        if problem is not None:
            return problem.domain, problem.sequence or 0, problem.problem
    return None

"""The audit trail's values and checks: links, keys, anchors, checkpoints, the error tree and
the module layering. Every store runs the tampering moves in ``tests/adapters/suite.py``."""

from __future__ import annotations

import ast
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import salesauthz.errors
from salesauthz import Authorizer, SalesAuthzError
from salesauthz._audit_chain import checkpoint_problem
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.audit import (
    GENESIS,
    KEY_ENV,
    RETIRED_KEYS_ENV,
    AuditCheckpoint,
    AuditDraft,
    AuditError,
    AuditKey,
    AuditKeyError,
    AuditKeyring,
    AuditRecord,
    AuditTrail,
    AuditVerificationError,
    find_break,
)

KEY = "5a" * 32


@pytest.fixture(autouse=True)
def _no_audit_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(RETIRED_KEYS_ENV, raising=False)


@pytest.fixture
def trail() -> Authorizer:
    now = [1_900_000_000.0]

    def clock() -> float:
        now[0] += 1
        return now[0]

    authz = Authorizer.from_directory("policies", clock=clock)
    admin = authz.admin("mgr_east", domain="acme")
    admin.grant("rep_e2", "customer", ["read"], scope="team")
    admin.create_account("intern_e2", department="east-2", parent="mgr_east")
    admin.freeze("rep_e2")
    authz.admin("g_admin", domain="globex").grant("g_rep", "order", ["approve"], scope="all")
    return authz


def test_chain_verifies_per_domain(trail: Authorizer) -> None:
    records = trail.audit.records()
    assert [r.sequence for r in records if r.domain == "acme"] == [1, 2, 3]
    assert [r.sequence for r in records if r.domain == "globex"] == [1]
    assert trail.audit.verify()
    assert trail.audit.verify("acme")
    assert trail.audit.verify(raise_on_failure=True)


@pytest.mark.parametrize("field", ["actor", "target", "operation", "detail", "time", "escalated",
                                   "added"])
def test_any_edit_is_detected(trail: Authorizer, field: str) -> None:
    records = trail.audit.records("acme")
    for position in range(len(records)):
        tampered = list(records)
        value = getattr(tampered[position], field)
        replacement: object = {str: value + "x" if isinstance(value, str) else value,
                               float: 0.0, bool: not value, tuple: ()}[type(value)]
        changes: dict[str, Any] = {field: replacement}
        tampered[position] = dataclasses.replace(tampered[position], **changes)
        assert find_break(tampered) is not None, (field, position)


def test_removal_insertion_and_reordering_are_detected(trail: Authorizer) -> None:
    records = trail.audit.records("acme")
    assert find_break(records[1:]) is not None
    assert find_break(records[:1] + records[2:]) is not None
    assert find_break([records[1], records[0], records[2]]) is not None
    assert find_break([*records, records[-1]]) is not None
    # Re-hashing an edited record does not help: the next record's link breaks.
    edited = dataclasses.replace(records[0], actor="alice")
    edited = dataclasses.replace(edited, hash=edited.compute_hash())
    assert find_break([edited, *records[1:]]) is not None
    # Links alone cannot show a cut-off tail: a shorter chain is a valid chain. The anchor does.
    assert find_break(records[:-1]) is None


def test_truncation_is_caught_by_the_anchor(trail: Authorizer) -> None:
    store = trail.store
    assert isinstance(store, MemoryAdapter)
    del store._audit[-2]  # acme's last record (globex's comes after it)
    (problem,) = trail.audit.problems()
    assert (problem.domain, problem.sequence) == ("acme", 3)
    assert problem.problem == ("its anchor says 3 record(s), the trail holds 2: records were removed "
                               "from its end")
    assert trail.audit.verify("globex")


def test_verify_reports_where_it_broke(trail: Authorizer) -> None:
    store = trail.store
    assert isinstance(store, MemoryAdapter)
    records = store._audit  # the memory store's own list: tampering from outside the API
    records[1] = dataclasses.replace(records[1], target="someone_else")
    assert not trail.audit.verify()
    with pytest.raises(AuditVerificationError) as caught:
        trail.audit.verify(raise_on_failure=True)
    assert (caught.value.domain, caught.value.sequence) == ("acme", 2)


def test_query(trail: Authorizer) -> None:
    assert [r.operation for r in trail.audit.query(actor="mgr_east")] == [
        "grant", "create_account", "freeze"]
    assert [r.target for r in trail.audit.query(target="rep_e2")] == ["rep_e2", "rep_e2"]
    assert [r.domain for r in trail.audit.query(operation="grant")] == ["acme", "globex"]
    first = trail.audit.records()[0].time
    assert len(trail.audit.query(since=first + 1)) == 3
    assert len(trail.audit.query(until=first + 1)) == 1
    assert trail.audit.query(escalated=True) == []
    assert len(trail.audit.query(domain="globex")) == 1


def test_json_round_trip(trail: Authorizer) -> None:
    for record in trail.audit.records():
        again = AuditRecord.from_json(record.to_json())
        assert again == record
        assert again.compute_hash() == record.hash


# -- the record format ------------------------------------------------------------------------

# A record and its hash exactly as salesauthz wrote them before keys and anchors existed.
LEGACY_JSON = (
    '{"actor":"mgr_east","added":[["p","rep_e2","acme","customer","read","team",""]],'
    '"detail":"华东 detail","domain":"acme","escalated":false,'
    '"hash":"316e497a8d797fb7a9f7e33197f1bd02b10c6ed26905e25f0171e61ef641832f","operation":"grant",'
    '"outcome":"applied","previous_hash":"' + "0" * 64 + '","removed":[],"sequence":1,'
    '"target":"rep_e2","time":1900000000.5}'
)


def test_records_written_before_keys_keep_their_hash_and_bytes() -> None:
    record = AuditRecord.from_json(LEGACY_JSON)
    assert record.key_id == ""
    assert record.compute_hash() == record.hash
    assert record.to_json() == LEGACY_JSON
    assert find_break([record]) is None


def test_keyed_record_needs_its_key() -> None:
    key = AuditKey(KEY)
    record = AuditRecord.from_json(LEGACY_JSON)
    keyed = dataclasses.replace(record, key_id=key.key_id)
    keyed = dataclasses.replace(keyed, hash=keyed.compute_hash(key))
    assert json.loads(keyed.to_json())["key_id"] == key.key_id
    assert AuditRecord.from_json(keyed.to_json()) == keyed
    assert keyed.hash != record.hash  # the key id is part of what the MAC covers
    for wrong in (None, AuditKey("c3" * 32)):
        with pytest.raises(AuditKeyError, match=f"sealed with key {key.key_id}") as caught:
            keyed.compute_hash(wrong)
        assert caught.value.key_id == key.key_id
    problem = find_break([keyed])  # verified without the key: named, not passed
    assert problem is not None
    assert f"sealed with key {key.key_id}, which is not configured here" in problem[2]
    assert find_break([keyed], AuditKeyring(key)) is None


def test_a_plain_record_after_a_keyed_one_is_a_downgrade() -> None:
    key = AuditKey(KEY)
    store = MemoryAdapter(audit_key=key)
    store.apply([], [], [AuditDraft(1.0, "a", "acme", "grant", "t")] * 2)
    first, second = store.load_audit()
    plain = dataclasses.replace(second, key_id="", hash="")
    plain = dataclasses.replace(plain, hash=plain.compute_hash())
    problem = find_break([first, plain], AuditKeyring(key))
    assert problem == ("acme", 2, "it is not sealed with a key although record 1 before it is: a forged "
                                  "or downgraded record")
    # With the key only retired (keys deliberately switched off), unkeyed records may follow.
    assert find_break([first, plain], AuditKeyring(None, (key,))) is None


# -- keys ---------------------------------------------------------------------------------------


def test_audit_key() -> None:
    key = AuditKey(KEY)
    assert key == AuditKey(KEY.encode())
    assert key != AuditKey("c3" * 32)
    assert key != KEY
    assert len(key.key_id) == 16
    assert int(key.key_id, 16) >= 0
    assert hash(key) == hash(AuditKey(KEY))
    assert KEY not in repr(key)
    assert repr(key) == f"AuditKey(key_id={key.key_id!r})"
    with pytest.raises(AuditKeyError, match="at least 32 bytes, this one has 31") as caught:
        AuditKey("x" * 31)
    assert caught.value.key_id is None


def test_keyring_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AuditKeyring.from_env() == AuditKeyring()
    assert AuditKeyring.of(None) == AuditKeyring()
    old, older = "0a" * 32, "0b" * 32
    environ = {KEY_ENV: f" {KEY}\n", RETIRED_KEYS_ENV: f"{old}, {older}\n"}
    keys = AuditKeyring.from_env(environ)
    assert keys == AuditKeyring(AuditKey(KEY), (AuditKey(old), AuditKey(older)))
    assert keys.find(AuditKey(older).key_id) == AuditKey(older)
    assert keys.find("0" * 16) is None
    assert keys.describe() == "configured: " + ", ".join(
        AuditKey(k).key_id for k in (KEY, old, older))
    assert AuditKeyring().describe() == "no audit key is configured"
    with pytest.raises(AuditKeyError, match=f"^{RETIRED_KEYS_ENV}: an audit key needs"):
        AuditKeyring.from_env({RETIRED_KEYS_ENV: f"{old} short"})
    too_short = f"^{KEY_ENV}: an audit key needs at least 32 bytes, this one has 9:"
    with pytest.raises(AuditKeyError, match=too_short):
        AuditKeyring.from_env({KEY_ENV: "too short"})
    monkeypatch.setenv(KEY_ENV, KEY)
    assert AuditKeyring.of(None) == AuditKeyring(AuditKey(KEY))
    assert AuditKeyring.of(KEY) == AuditKeyring.of(AuditKey(KEY)) == AuditKeyring(AuditKey(KEY))
    assert AuditKeyring.of(keys) is keys


def test_the_environment_key_seals_an_authorizers_trail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    authz = Authorizer.from_directory("policies")
    authz.admin("mgr_east", domain="acme").grant("rep_e2", "customer", ["read"], scope="team")
    (record,) = authz.audit.records()
    assert record.key_id == AuditKey(KEY).key_id
    assert authz.audit.verify(raise_on_failure=True)
    problem = AuditTrail(authz.store, keys=AuditKeyring()).problems()[0]
    assert problem.problem.startswith(f"it is sealed with key {record.key_id}, which is not configured here")


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_document() -> None:
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    plain = AuditCheckpoint.make("华东", 3, "ab" * 32, None, now=moment)
    assert json.loads(plain.to_json()) == {"format": "salesauthz-audit-checkpoint/1", "domain": "华东",
                                           "count": 3, "head": "ab" * 32, "time": "2026-03-01T12:30:00Z"}
    signed = AuditCheckpoint.make("华东", 3, "ab" * 32, AuditKey(KEY), now=moment)
    data = json.loads(signed.to_json())
    assert (data["key_id"], len(data["signature"])) == (AuditKey(KEY).key_id, 64)
    assert AuditCheckpoint.from_json(signed.to_json()) == signed
    assert AuditCheckpoint.make("x", 0, GENESIS, None).time.endswith("Z")


@pytest.mark.parametrize(("text", "message"), [
    ("{", "invalid JSON"),
    ("[]", "expected a JSON object"),
    ('{"format": "other"}', "'format' must be"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": 1}', "'domain' must be a string"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": "a", "count": -1}', "'count' must be"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": "a", "count": true}', "'count' must be"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": "a", "count": 1, "head": "xyz"}',
     "'head' must be 64 hex digits"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": "a", "count": 1, "head": "' + "a" * 64
     + '", "time": 5}', "'time', 'key_id' and 'signature' must be strings"),
])
def test_malformed_checkpoint(text: str, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        AuditCheckpoint.from_json(text)


def test_checkpoint_of_another_domain() -> None:
    checkpoint = AuditCheckpoint.make("globex", 0, GENESIS, None)
    problem = checkpoint_problem("acme", [], checkpoint, AuditKeyring())
    assert problem is not None
    assert problem.problem == "the checkpoint is of domain 'globex'"


def test_verify_takes_a_checkpoint_document(trail: Authorizer) -> None:
    document = trail.audit.checkpoint("acme").to_json()
    assert trail.audit.verify("acme", checkpoint=document)
    with pytest.raises(AuditError, match="invalid JSON"):
        trail.audit.verify(checkpoint=document[:-5])


# -- the error tree and the layering -------------------------------------------------------------


def test_errors_sit_in_the_error_tree() -> None:
    assert issubclass(AuditVerificationError, AuditError)
    assert issubclass(AuditKeyError, AuditError)
    assert issubclass(AuditError, SalesAuthzError)
    assert issubclass(AuditError, ValueError)
    assert salesauthz.errors.AuditVerificationError is AuditVerificationError  # one class, two homes
    error = AuditVerificationError("acme", None, "its anchor was deleted")
    assert str(error) == "audit trail of domain 'acme' is broken: its anchor was deleted"
    error = AuditVerificationError("acme", 4, "x")
    assert str(error) == "audit trail of domain 'acme' is broken at record 4: x"


def _imports(module: Path, package_root: Path, known: set[str]) -> set[str]:
    """Every salesauthz module ``module`` imports, wherever the import statement sits
    (``TYPE_CHECKING`` blocks and function bodies included)."""
    name = ".".join(module.relative_to(package_root.parent).with_suffix("").parts)
    package = name.removesuffix(".__init__") if module.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            # "from package import submodule" imports the submodule; "from module import name", the module
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return found & known


def test_audit_and_the_stores_import_no_cycle() -> None:
    package_root = Path(salesauthz.errors.__file__).parent
    paths = {".".join(path.relative_to(package_root.parent).with_suffix("").parts): path
             for path in package_root.rglob("*.py")}
    paths = {name.removesuffix(".__init__"): path for name, path in paths.items()}
    graph = {name: _imports(path, package_root, set(paths)) for name, path in paths.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])
        return False

    stores = ["salesauthz.adapters", "salesauthz.adapters.base", "salesauthz.adapters.memory",
              "salesauthz.adapters.sql", "salesauthz.adapters.casbin_compat"]
    for module in ["salesauthz.audit", "salesauthz._audit_chain", *stores]:
        assert not any(reaches(imported, module) for imported in graph[module]), module
    assert graph["salesauthz._audit_chain"] == {"salesauthz.errors", "salesauthz._rules"}
    assert "salesauthz.adapters.base" in graph["salesauthz.audit"]
    assert not any(reaches(store, "salesauthz.audit") for store in stores)


def test_a_malformed_key_fails_audited_writes_not_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "too short")
    authz = Authorizer.from_directory("policies")  # reading rules needs no key
    rules = authz.rules()
    with pytest.raises(AuditKeyError, match="at least 32 bytes"):  # raw changes are audited too
        authz.apply_changes([("p4", "extra", "acme")])
    with pytest.raises(AuditKeyError, match="at least 32 bytes"):
        authz.admin("mgr_east", domain="acme").grant("rep_e2", "customer", ["read"], scope="team")
    assert authz.rules() == rules
    assert authz.audit.records() == []
    with pytest.raises(AuditKeyError):
        authz.audit.verify()

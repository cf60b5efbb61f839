"""``salesauthz audit verify | checkpoint | anchor`` on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.adapters._tamper import SQLTamperer

from salesauthz.adapters.sql import SQLAdapter
from salesauthz.audit import KEY_ENV, RETIRED_KEYS_ENV, AuditDraft, AuditKey
from salesauthz.checker.cli import main

KEY = "5a" * 32


@pytest.fixture(autouse=True)
def _no_audit_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(RETIRED_KEYS_ENV, raising=False)


def write(url: str, domain: str, count: int) -> None:
    store = SQLAdapter(url)
    try:
        for n in range(count):
            store.apply([("p4", f"r{n}", domain)], [], [AuditDraft(1.0, "ci", domain, "grant", f"r{n}")])
    finally:
        store.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    write(url, "acme", 3)
    write(url, "华东", 1)
    return url


def test_verify_checkpoint_and_a_rollback(url: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "acme: intact (3 records)\n华东: intact (1 record)\n" in out
    assert "every trail intact in sqlite:///" in out

    store = SQLAdapter(url)
    tamper = SQLTamperer(store)
    backup = tamper.records("acme"), tamper.anchor("acme")
    write(url, "acme", 2)
    file = tmp_path / "checkpoints.json"
    assert main(["audit", "checkpoint", "--url", url, "-o", str(file)]) == 0
    assert "wrote" in capsys.readouterr().err
    written = json.loads(file.read_text(encoding="utf-8"))
    assert [(c["domain"], c["count"]) for c in written] == [("acme", 5), ("华东", 1)]
    write(url, "acme", 1)
    assert main(["audit", "verify", "--url", url, "--checkpoint", str(file)]) == 0
    assert ", 2 checkpoints)" in capsys.readouterr().out

    # Trail and anchor restored from the backup: consistent, so only the checkpoint shows it.
    tamper.rewrite("acme", backup[0])
    tamper.set_anchor("acme", backup[1])
    store.close()
    assert main(["audit", "verify", "--url", url]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--url", url, "--checkpoint", str(file)]) == 1
    out = capsys.readouterr().out
    assert "audit trail of domain 'acme' is broken at record 4: the checkpoint of" in out
    assert "covers 5 record(s), the trail holds 3" in out
    assert "华东: intact" in out
    assert "1 broken trail" in out
    assert main(["audit", "verify", "--url", url, "--domain", "华东", "--checkpoint", str(file)]) == 0


def test_single_domain_checkpoint_is_one_object(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "checkpoint", "--url", url, "--domain", "acme"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["domain"], data["count"], "signature" in data) == ("acme", 3, False)


def test_broken_trail_then_anchor(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLAdapter(url)
    SQLTamperer(store).rewrite("acme", store.load_audit("acme")[:-1])
    store.close()
    assert main(["audit", "verify", "--url", url, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["domains"]["acme"] == {"records": 2, "problem": {
        "sequence": 3, "problem": "its anchor says 3 record(s), the trail holds 2: records were removed "
                                  "from its end"}}
    assert report["domains"]["华东"] == {"records": 1, "problem": None}
    file = tmp_path / "cp.json"
    assert main(["audit", "checkpoint", "--url", url, "-o", str(file)]) == 1
    assert "no checkpoint written" in capsys.readouterr().err
    assert not file.exists()
    assert main(["audit", "anchor", "--url", url, "--domain", "acme", "--reason", "restore, ticket 7",
                 "--actor", "ops"]) == 0
    assert "acme: anchored at record 3 (restore, ticket 7 (was: anchor at record 3" in capsys.readouterr().out
    assert main(["audit", "verify", "--url", url]) == 0


def test_keyed_store(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(["audit", "verify", "--url", url]) == 1  # anchors from before the key
    assert "not sealed with the configured key" in capsys.readouterr().out
    assert main(["audit", "anchor", "--url", url, "--domain", "acme", "--domain", "华东",
                 "--reason", "key introduced"]) == 0
    assert main(["audit", "verify", "--url", url]) == 0
    file = tmp_path / "acme.json"
    assert main(["audit", "checkpoint", "--url", url, "--domain", "acme", "-o", str(file)]) == 0
    assert json.loads(file.read_text(encoding="utf-8"))["key_id"] == AuditKey(KEY).key_id
    capsys.readouterr()
    monkeypatch.delenv(KEY_ENV)
    assert main(["audit", "verify", "--url", url, "--checkpoint", str(file)]) == 1
    assert f"sealed with key {AuditKey(KEY).key_id}, which is not configured here" in capsys.readouterr().out
    monkeypatch.setenv(KEY_ENV, "too short")
    assert main(["audit", "verify", "--url", url]) == 2
    assert "an audit key needs at least 32 bytes" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ("{", "invalid JSON"),
    ('[{"format": "x"}]', "'format' must be"),
    ('{"format": "salesauthz-audit-checkpoint/1", "domain": "globex", "count": 0, "head": "'
     + "0" * 64 + '", "time": "t"}', "holds no checkpoint of domain 'acme'"),
])
def test_unusable_checkpoint_file(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  content: str | None, message: str) -> None:
    file = tmp_path / "cp.json"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    assert main(["audit", "verify", "--url", url, "--domain", "acme", "--checkpoint", str(file)]) == 2
    assert message in capsys.readouterr().err


def test_row_that_is_no_record(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLAdapter(url)
    SQLTamperer(store).corrupt("acme", 2, "garbage")
    store.close()
    assert main(["audit", "verify", "--url", url]) == 1
    assert "audit trail of domain 'acme' is broken at record 2: the stored row is not an audit record" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("action", [["verify"], ["checkpoint"], ["anchor", "--domain", "a", "--reason", "r"]])
def test_unreachable_store(tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    assert main(["audit", action[0], "--url", url, *action[1:]]) == 2
    assert "cannot" in capsys.readouterr().err


def test_anchor_without_the_key_of_a_keyed_trail(url: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(["audit", "anchor", "--url", url, "--domain", "acme", "--reason", "key"]) == 0
    monkeypatch.delenv(KEY_ENV)
    assert main(["audit", "anchor", "--url", url, "--domain", "acme", "--reason", "again"]) == 2
    assert "nothing written" in capsys.readouterr().err


def test_checkpoint_to_an_unwritable_file(url: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "checkpoint", "--url", url, "-o", str(tmp_path / "no" / "such" / "f.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_import_reports_audit_errors_without_a_traceback(url: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = SQLAdapter(url)
    state = sorted(before.load()), before.read_audit()
    SQLTamperer(before).set_anchor("acme", None)  # the acme trail was tampered with
    before.close()
    assert main(["import", "policies", "--into", url, "--actor", "ci"]) == 2
    assert "its records (up to 3) have no anchor" in capsys.readouterr().err
    monkeypatch.setenv(KEY_ENV, "too short")
    assert main(["import", "policies", "--into", url, "--actor", "ci"]) == 2
    error = capsys.readouterr().err
    assert f"{KEY_ENV}: an audit key needs at least 32 bytes" in error
    assert error.endswith("; nothing was imported\n")
    after = SQLAdapter(url)
    assert sorted(after.load()) == state[0]
    assert after.read_audit().records == state[1].records
    after.close()
    # Reading commands need no key at all.
    assert main(["explain", "rep_e1a", "read", "customer", "policies", "--domain", "acme",
                 "--owner", "rep_e1a"]) == 0

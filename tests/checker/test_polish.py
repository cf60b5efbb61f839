"""The command line helps whoever mistypes: "did you mean" for commands, options, choices and
names; errors that say what is wrong (an unknown action is one); counts in good English;
read-only commands that never create a database or a table."""

from __future__ import annotations

import ast
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from salesauthz._wording import capped, closest, count, did_you_mean, docs_url
from salesauthz.checker.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = str(ROOT / "policies")


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_mistyped_command_option_and_choice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chek", POLICIES]) == 2
    assert "invalid choice: 'chek'" in (err := _error(capsys))
    assert err.rstrip().endswith("did you mean 'check'?")
    assert main(["check", POLICIES, "--formt", "json"]) == 2
    err = _error(capsys)
    assert err.startswith("usage: salesauthz check ")  # the subcommand's usage, not the top level's
    assert "unrecognized arguments: --formt json — --formt: did you mean '--format'?" in err
    assert main(["check", POLICIES, "--format", "jsn"]) == 2
    assert "invalid choice: 'jsn'" in (err := _error(capsys))
    assert err.rstrip().endswith("did you mean 'json'?")
    # A misspelt required option is reported as the one missing, with what was typed instead.
    assert main(["who-can", "read", "customer", "--domian", "acme", POLICIES]) == 2
    err = _error(capsys)
    assert err.startswith("usage: salesauthz who-can ")
    assert "required: --domain — --domian: did you mean '--domain'?" in err
    assert main(["check", POLICIES, "--frobnicate"]) == 2
    assert _error(capsys).rstrip().endswith("unrecognized arguments: --frobnicate")  # nothing close


@pytest.mark.parametrize(("argv", "message"), [
    (["who-can", "fly", "customer"],
     "unknown action 'fly' for customer in domain 'acme'; customer has: assign, create, delete, "
     "export, read, share, update"),
    (["who-can", "raed", "customer"],
     "unknown action 'raed' for customer in domain 'acme': did you mean 'read'?"),
    (["who-can", "read", "custmer"],
     "unknown resource type 'custmer' in domain 'acme': did you mean 'customer'?"),
    (["who-can", "read", "customer", "--department", "east1"],
     "unknown department 'east1' in domain 'acme': did you mean 'east-1'?"),
    (["who-can", "read", "customer", "--owner", "rep_e1c"],
     "unknown account 'rep_e1c' (--owner) in domain 'acme': did you mean 'rep_e1b'?"),
    (["what-can", "mgr_eats"], "unknown account 'mgr_eats' in domain 'acme': did you mean 'mgr_east'?"),
    (["what-can", "senior_rep"], "'senior_rep' is a role of domain 'acme', not an account"),
    (["explain", "rep_e1a", "read", "customer", "--owner", "nobody"],
     "unknown account 'nobody' (--owner) in domain 'acme'"),
])
def test_unknown_names_are_errors_with_a_suggestion(argv: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--domain", "acme", POLICIES]) == 2
    assert _error(capsys) == f"salesauthz: error: {message}\n"


def test_unknown_domain_suggests_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "--domain", "acm", POLICIES]) == 2
    assert "domain 'acm' is not in" in (err := _error(capsys))
    assert "did you mean 'acme'?" in err


def test_wording_helpers() -> None:
    assert [count(n, "error") for n in (0, 1, 2, 1234)] == ["0 errors", "1 error", "2 errors", "1,234 errors"]
    assert count(2, "loss") == "2 losses"
    assert capped(["a"]) == "a"
    assert capped(["a", "b"]) == "a and b"
    assert capped(["a", "b", "c", "d"]) == "a, b, c and d"  # "and 1 more" would be longer
    assert capped([f"d{i}" for i in range(650)], noun="department") == "d0, d1, d2 and 647 more departments"
    assert capped(["a", "b", "c", "d", "e"], 3, noun="account") == "a, b, c and 2 more accounts"
    assert did_you_mean("senoir_rep", ["senior_rep", "junior_rep"]) == "did you mean 'senior_rep'?"
    assert did_you_mean("xyz", ["senior_rep"]) is None
    assert closest("REP_E1A", ["rep_e1a"]) == ["rep_e1a"]  # case alone
    assert closest("rep", ["rep"]) == []  # the name itself is no suggestion
    assert docs_url("checker", "sa201") == "https://salesauthz.readthedocs.io/checker/#sa201"


def test_messages_point_at_the_documentation_site_not_the_repository() -> None:
    # Every string of the package that is not a docstring: a message, a hint, a help text.
    offenders = []
    for path in (ROOT / "src" / "salesauthz").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and re.search(r"\bdocs/[\w/-]+\.md", node.value):
                offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert offenders == []


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    assert main(["import", POLICIES, "--into", url]) == 0
    return url


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("SELECT type, name FROM sqlite_master"))


def test_read_only_commands_never_create_a_database(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    url = f"sqlite:///{missing}"
    for argv in (["who-can", "read", "customer", "--domain", "acme", "--url", url],
                 ["what-can", "alice", "--domain", "acme", "--url", url],
                 ["explain", "alice", "read", "customer", "--domain", "acme", "--url", url],
                 ["review", "--domain", "acme", "--url", url],
                 ["diff", url, POLICIES],
                 ["audit", "verify", "--url", url],
                 ["audit", "checkpoint", "--url", url]):
        assert main(argv) == 2, argv
        assert f"{missing} does not exist" in capsys.readouterr().err, argv
        assert not missing.exists(), argv
    assert not list(tmp_path.iterdir())


def test_read_only_commands_run_no_ddl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path)
    database = tmp_path / "rules.db"
    # Remove what opening a store for writing (re)creates: a trigger and an index.
    with sqlite3.connect(database) as connection:
        dropped = [row for row in connection.execute("SELECT type, name FROM sqlite_master")
                   if row[0] in ("trigger", "index") and not row[1].startswith("sqlite_")]
        assert dropped, "the store has triggers and indexes to drop"
        for kind, name in dropped:
            connection.execute(f'DROP {kind.upper()} "{name}"')
    before = _schema(database)
    capsys.readouterr()
    for argv in (["who-can", "read", "customer", "--domain", "acme", "--url", url],
                 ["what-can", "alice", "--domain", "acme", "--url", url],
                 ["explain", "alice", "read", "customer", "--domain", "acme", "--url", url],
                 ["review", "--domain", "acme", "--url", url],
                 ["diff", url, POLICIES, "--domain", "acme"],
                 ["audit", "verify", "--url", url]):
        assert main(argv) == 0, (argv, capsys.readouterr())
        assert _schema(database) == before, argv
    # The control: a command that writes does recreate them.
    assert main(["import", POLICIES, "--into", url]) == 0
    assert _schema(database) != before


def test_a_copy_of_the_sample_is_not_needed_for_the_read_only_check(tmp_path: Path) -> None:
    # A store URL whose directory does not exist is refused by name too.
    url = f"sqlite:///{tmp_path / 'nope' / 'rules.db'}"
    assert main(["who-can", "read", "customer", "--domain", "acme", "--url", url]) == 2
    assert not (tmp_path / "nope").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_test_file_gets_did_you_mean_and_plain_words(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("*.test.yaml"))
    (policies / "x.test.yaml").write_text(
        "domain: acme\ntests:\n"
        "  - chek: {account: alice, action: read, record: {type: customer}}\n    expect: allow\n"
        "  - check: {account: alice, action: read, record: {type: customer, ownr: x}}\n    expect: maybe\n",
        encoding="utf-8")
    assert main(["test", str(policies), "--no-color"]) == 2
    out = capsys.readouterr().out
    assert "tests.0.chek: unknown key 'chek'\n    hint: did you mean 'check'?" in out
    assert "tests.1.check.record.ownr: unknown key 'ownr'\n    hint: did you mean 'owner'?" in out
    assert "tests.1.expect: expected 'allow' or 'deny', or a list ([a, b]), not text 'maybe'" in out


def test_read_only_opening_of_other_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from salesauthz.checker.readonly import open_read_only
    from salesauthz.errors import StorageError

    missing = tmp_path / "casbin.db"
    with pytest.raises(StorageError, match=r"casbin\.db does not exist"):
        open_read_only(f"casbin+sqlite:///{missing}")
    assert not missing.exists()
    url = f"casbin+sqlite:///{missing}"
    assert main(["import", POLICIES, "--into", url]) == 0
    capsys.readouterr()
    with sqlite3.connect(missing) as connection:
        connection.execute("DROP INDEX IF EXISTS " + next(
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                   "AND name NOT LIKE 'sqlite_%'")))
    before = _schema(missing)
    assert main(["what-can", "alice", "--domain", "acme", "--url", url]) == 0
    assert _schema(missing) == before  # no index recreated
    store = open_read_only("memory://")  # nothing to create: opened as it is
    assert store.load() == []
    store.close()
    with pytest.raises(StorageError, match="no adapter"):
        open_read_only("ftp://example.com/rules")
    # In-memory SQLite and SQLite URIs are the caller's business: no file to look for.
    store = open_read_only("sqlite://")
    store.close()


def test_verify_of_a_store_from_before_anchors_says_what_to_do(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path)
    database = tmp_path / "rules.db"
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE salesauthz_audit_anchors")  # as an older salesauthz left it
    capsys.readouterr()
    assert main(["audit", "verify", "--url", url]) == 2
    assert "verify only reads; a store last written by a salesauthz from before audit anchors" in \
        capsys.readouterr().err
    assert ("table", "salesauthz_audit_anchors") not in _schema(database)  # verify created nothing
    assert main(["import", POLICIES, "--into", url]) == 0  # a writer opens it: anchored
    assert main(["audit", "verify", "--url", url]) == 0

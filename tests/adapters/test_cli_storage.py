"""``salesauthz import`` / ``export``: validate first, one transaction, a dry-run diff, and
export-then-import is the identity — hostile identifiers included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from salesauthz.adapters.sql import SQLAdapter
from salesauthz.checker.cli import main
from salesauthz.checker.storage_commands import document_file_name, export_domains, import_directory
from salesauthz.models import load_directory
from tests.conftest import POLICIES, examples
from tests.strategies import Organisation, organisations


def store_url(directory: Path, name: str = "store.db") -> str:
    return f"sqlite:///{directory / name}"


def stored(url: str) -> list[tuple[str, ...]]:
    store = SQLAdapter(url)
    try:
        return sorted(store.load())
    finally:
        store.close()


def test_import_then_reimport(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = store_url(tmp_path)
    assert main(["import", str(POLICIES), "--into", url, "--actor", "ci"]) == 0
    out = capsys.readouterr().out
    assert "acme: changed (+" in out
    assert "imported into" in out
    expected = sorted(set(load_directory(POLICIES).rules))
    assert stored(url) == expected
    assert main(["import", str(POLICIES), "--into", url]) == 0
    assert "acme: unchanged (+0 -0 rules)" in capsys.readouterr().out
    store = SQLAdapter(url)
    audit = store.load_audit()
    store.close()
    assert [(r.domain, r.operation, r.actor) for r in audit] == [("acme", "import", "ci"),
                                                                 ("globex", "import", "ci")]


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = store_url(tmp_path)
    store = SQLAdapter(url)
    store.apply([("p4", "obsolete,role", "acme"), ("p4", "other", "untouched")], [])
    store.close()
    assert main(["import", str(POLICIES), "--into", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '- ["p4", "obsolete,role", "acme"]' in out
    assert '+ ["p4", "admin", "acme"]' in out
    assert "dry run: nothing written" in out
    assert stored(url) == [("p4", "obsolete,role", "acme"), ("p4", "other", "untouched")]
    assert main(["import", str(POLICIES), "--into", url, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["domains"]["acme"]["removed"] == [["p4", "obsolete,role", "acme"]]
    assert ("p4", "other", "untouched") in stored(url)  # domains not in the directory: untouched
    assert ("p4", "obsolete,role", "acme") not in stored(url)


def test_invalid_policy_is_a_finding_and_writes_nothing(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = store_url(tmp_path)
    broken = tmp_path / "policies"
    broken.mkdir()
    (broken / "acme.yaml").write_text("domain: acme\nroles:\n  rep:\n    inherits: [ghost]\n",
                                      encoding="utf-8")
    assert main(["import", str(broken), "--into", url]) == 1
    err = capsys.readouterr().err
    assert "acme.yaml:4" in err
    assert "nothing was imported" in err
    assert stored(url) == []


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "missing"), "--into", store_url(tmp_path)]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["import", str(POLICIES), "--into", "postgresql://u:hunter2@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "u:***@" in err
    assert main(["export", store_url(tmp_path), "--domain", "nowhere", "--to", str(tmp_path / "o")]) == 2
    assert "store.db does not exist" in capsys.readouterr().err  # export reads: it creates no store
    assert not (tmp_path / "store.db").exists()
    assert main(["export", "ftp://x", "--domain", "acme", "--to", str(tmp_path / "o")]) == 2
    assert main(["import", str(POLICIES)]) == 2  # --into is required
    url = store_url(tmp_path)
    assert main(["import", str(POLICIES), "--into", url]) == 0
    assert main(["export", url, "--domain", "nowhere", "--to", str(tmp_path / "o")]) == 2
    assert "no rules for domain 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["export", url, "--domain", "acme", "--to", str(blocker)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_export_sample_then_import_is_the_identity(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = store_url(tmp_path, "a.db")
    import_directory(POLICIES, source)
    out_dir = tmp_path / "backup"
    assert main(["export", source, "--domain", "acme", "--domain", "globex", "--to", str(out_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out_dir.iterdir()) == ["acme.yaml", "globex.yaml", "model.conf"]
    restored = store_url(tmp_path, "b.db")
    assert main(["import", str(out_dir), "--into", restored]) == 0
    assert stored(restored) == stored(source)
    diff = import_directory(out_dir, source, dry_run=True)
    assert all(added == [] and removed == [] for added, removed in diff.values())


@settings(max_examples=examples(10), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org=organisations())
def test_export_import_identity_with_hostile_identifiers(tmp_path_factory: pytest.TempPathFactory,
                                                         org: Organisation) -> None:
    work = tmp_path_factory.mktemp("roundtrip")
    source = store_url(work, "a.db")
    store = SQLAdapter(source)
    store.apply(org.rules, [])
    store.close()
    export_domains(source, org.domains, work / "out")
    restored = store_url(work, "b.db")
    import_directory(work / "out", restored)
    assert stored(restored) == stored(source)
    diff = import_directory(work / "out", source, dry_run=True)
    assert all(added == [] and removed == [] for added, removed in diff.values())


def test_document_file_names_are_safe() -> None:
    assert document_file_name("acme") == "acme.yaml"
    for hostile in ("../etc", "华东 Corp", "a/b", "x.test", ".hidden", "new\nline"):
        name = document_file_name(hostile)
        assert name.startswith("domain-")
        assert "/" not in name

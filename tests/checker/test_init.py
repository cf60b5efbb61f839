"""``salesauthz init``: the scaffolded directory passes the checker at once, and init never
overwrites anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from salesauthz import Authorizer, Record
from salesauthz.checker import init_command
from salesauthz.checker.cli import main
from salesauthz.checker.testing import TestFileError, run_tests
from salesauthz.models.loader import bundled_model_text, load_directory


def test_templates_are_listed() -> None:
    assert init_command.DEFAULT_TEMPLATE in init_command.templates()


def test_init_writes_a_directory_that_checks_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "policies"
    assert main(["init", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"created {target / 'model.conf'}" in out
    assert f"next: salesauthz check {target}" in out
    names = sorted(p.name for p in target.iterdir())
    assert names == ["README.md", "model.conf", "organisation.test.yaml", "organisation.yaml"]
    assert (target / "model.conf").read_text(encoding="utf-8") == bundled_model_text()
    assert main(["check", str(target)]) == 0
    assert "no findings" in capsys.readouterr().out  # not even a warning
    assert main(["test", str(target)]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert load_directory(target).domains == ["example"]


def test_the_starter_organisation_decides_as_its_comments_say(tmp_path: Path) -> None:
    init_command.scaffold(tmp_path)
    authz = Authorizer.from_directory(tmp_path)
    mine = Record("customer", owner="rep_north")
    assert authz.check("rep_north", "update", mine, domain="example")
    assert not authz.check("rep_south", "read", mine, domain="example")
    assert authz.check("manager_north", "read", mine, domain="example")
    assert not authz.check("manager_north", "read", Record("customer", owner="rep_south"), domain="example")
    # The assistant is a sub-account of manager_north: team-wide reads, capped by its parent.
    assert authz.check("assistant_north", "read", mine, domain="example")
    assert not authz.check("assistant_north", "update", mine, domain="example")
    assert authz.check("owner", "delete", Record("customer", owner="rep_south"), domain="example")


def test_init_into_an_existing_empty_directory(tmp_path: Path) -> None:
    written = init_command.scaffold(tmp_path, "sales-team")
    assert all(path.parent == tmp_path for path in written)


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "organisation.yaml").write_text("domain: mine\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite" in err
    assert "organisation.yaml" in err
    assert (tmp_path / "organisation.yaml").read_text(encoding="utf-8") == "domain: mine\n"
    assert not (tmp_path / "model.conf").exists()


def test_init_refuses_a_file_as_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a-file"
    target.write_text("x", encoding="utf-8")
    assert main(["init", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_init_reports_an_unwritable_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x", encoding="utf-8")
    # A parent path component that is a file: mkdir fails with an OSError, not a clash.
    assert main(["init", str(blocker / "below")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unknown_template_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path), "--template", "no-such"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown template 'no-such'"):
        init_command.scaffold(tmp_path, "no-such")


def test_template_files_skip_caches_and_hidden_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "templates" / "mine"
    (template / "__pycache__").mkdir(parents=True)
    (template / "__pycache__" / "x.pyc").write_text("junk", encoding="utf-8")
    (template / ".org.yaml.swp").write_text("junk", encoding="utf-8")
    (template / "nested").mkdir()
    (template / "nested" / "org.yaml").write_text("domain: d\n", encoding="utf-8")
    monkeypatch.setattr(init_command, "_templates_root", lambda: tmp_path / "templates")
    assert init_command.templates() == ["mine"]
    written = init_command.scaffold(tmp_path / "out", "mine")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "model.conf", "nested/org.yaml"]


# Every name organisation.test.yaml uses, by kind: renamed in organisation.yaml alone (as a new
# user reshaping the starter organisation would), none may leave a test passing without testing.
RENAMED = ["example", "rep_north", "rep_south", "manager_north", "assistant_north", "rep",
           "customer", "read", "update", "delete", "export"]


def _rename_in_the_organisation(directory: Path, name: str) -> None:
    init_command.scaffold(directory)
    organisation = directory / "organisation.yaml"
    text = organisation.read_text(encoding="utf-8")
    renamed, count = re.subn(rf"(?<![\w-]){re.escape(name)}(?![\w-])", name + "_renamed", text)
    assert count >= 1
    organisation.write_text(renamed, encoding="utf-8")
    assert main(["check", str(directory)]) == 0  # the organisation itself is still sound


@pytest.mark.parametrize("name", RENAMED)
def test_after_a_rename_in_the_organisation_no_test_passes_vacuously(tmp_path: Path, name: str) -> None:
    _rename_in_the_organisation(tmp_path, name)
    with pytest.raises(TestFileError) as caught:
        run_tests(tmp_path)
    findings = caught.value.findings
    assert [f.code for f in findings] == ["SA302"] * len(findings)
    assert all(f.file == str(tmp_path / "organisation.test.yaml") and f.line for f in findings)
    assert any(f"{name!r}" in f.message for f in findings)


def test_a_renamed_account_only_an_exhaustive_answer_lists_fails_that_case(tmp_path: Path) -> None:
    _rename_in_the_organisation(tmp_path, "owner")  # named only in who-can's `expect:`
    report = run_tests(tmp_path)
    assert [r.name for r in report.failures] == [
        "only the owner and the north manager may export customers of the north"]


def test_the_domain_rename_is_reported_once_at_the_domain_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_command.scaffold(tmp_path)
    organisation = tmp_path / "organisation.yaml"
    organisation.write_text(organisation.read_text(encoding="utf-8").replace(
        "domain: example", "domain: mycompany"), encoding="utf-8")
    capsys.readouterr()
    assert main(["test", str(tmp_path), "--no-color"]) == 1
    out = capsys.readouterr().out
    test_file = tmp_path / "organisation.test.yaml"
    line = test_file.read_text(encoding="utf-8").splitlines().index("domain: example") + 1
    assert out.count("error SA302") == 1
    assert f"{test_file}:{line}:1: error SA302: unknown domain 'example'" in out
    assert "the policies define mycompany" in out

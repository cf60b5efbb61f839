"""A corpus of broken policy directories: each fails with a PolicyError naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesauthz import Authorizer, PolicyError

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bad_policies"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_broken_directory_is_rejected_with_location(case: str) -> None:
    expected_file, expected_line, expected_code, fragment = (
        (CORPUS / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    )
    with pytest.raises(PolicyError) as caught:
        Authorizer.from_directory(CORPUS / case)
    issues = caught.value.issues
    matching = [i for i in issues if fragment in str(i)]
    assert matching, f"no issue mentions {fragment!r}: {[str(i) for i in issues]}"
    issue = matching[0]
    assert issue.file is not None
    assert issue.file.endswith(expected_file)
    if expected_line != "-":
        assert issue.line == int(expected_line), str(issue)
        assert issue.column is not None
    assert issue.code.startswith(expected_code)
    assert expected_file in str(caught.value)


def test_nothing_is_half_loaded(tmp_path: Path) -> None:
    # One good and one bad document: the whole directory is refused.
    (tmp_path / "good.yaml").write_text("domain: good\naccounts:\n  a: {}\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("domain: bad\naccounts:\n  a: {roles: [nope]}\n",
                                       encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        Authorizer.from_directory(tmp_path)
    assert len(caught.value.issues) == 1
    assert caught.value.line == 3


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing does not exist"):
        Authorizer.from_directory(tmp_path / "missing")
    (tmp_path / "a.yaml").write_text("domain: a\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"a\.yaml is not a directory"):
        Authorizer.from_directory(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").unlink()
    with pytest.raises(PolicyError, match="no policy documents"):
        Authorizer.from_directory(tmp_path)


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"domain: caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8") as caught:
        Authorizer.from_directory(tmp_path)
    assert (caught.value.line, caught.value.column) == (1, 12)

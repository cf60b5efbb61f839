"""``models/loader.py``: which files a policy directory is made of, and how each is read.

What careless authors do and is fine (a byte-order mark, CRLF, ``.yml``, links) loads; the
refusals are in ``test_hostile.py``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from salesauthz import PolicyError
from salesauthz.models import loader
from salesauthz.models.loader import load_directory, policy_files, read_text_file, yaml_files

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = "domain: acme\nresources:\n  customer: [read]\naccounts:\n  bob: {}\n"


def test_byte_order_mark_and_crlf_load(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_bytes(b"\xef\xbb\xbf" + DOCUMENT.replace("\n", "\r\n").encode())
    model = (ROOT / "policies" / "model.conf").read_bytes()
    (tmp_path / "model.conf").write_bytes(b"\xef\xbb\xbf" + model.replace(b"\n", b"\r\n"))
    policy = load_directory(tmp_path)
    assert policy.domains == ["acme"]
    assert read_text_file(tmp_path / "acme.yaml").startswith("domain")  # the mark is dropped


def test_yml_and_nested_directories_load(tmp_path: Path) -> None:
    (tmp_path / "tenants" / "eu").mkdir(parents=True)
    (tmp_path / "tenants" / "eu" / "acme.yml").write_text(DOCUMENT, encoding="utf-8")
    (tmp_path / "globex.yaml").write_text("domain: globex\n", encoding="utf-8")
    assert sorted(load_directory(tmp_path).domains) == ["acme", "globex"]


def test_hidden_entries_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(DOCUMENT, encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "junk.yaml").write_bytes(b"\x00\xff")
    os.mkfifo(tmp_path / ".pipe.yaml")
    (tmp_path / ".ACME.YAML").write_text("x", encoding="utf-8")
    assert load_directory(tmp_path).domains == ["acme"]
    assert yaml_files(tmp_path) == ([tmp_path / "acme.yaml"], [])


def test_links_to_files_and_directories_are_followed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "acme.yaml").write_text(DOCUMENT, encoding="utf-8")
    (shared / "globex.txt").write_text("domain: globex\n", encoding="utf-8")
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "common").symlink_to(shared)
    (policies / "mine.yaml").symlink_to(shared / "globex.txt")  # the link's name makes it policy
    assert sorted(load_directory(policies).domains) == ["acme", "globex"]
    assert policy_files(policies) == [policies / "common" / "acme.yaml", policies / "mine.yaml"]


def test_a_link_into_an_ancestor_is_a_loop_even_from_below(tmp_path: Path) -> None:
    (tmp_path / "policies" / "deep").mkdir(parents=True)
    (tmp_path / "policies" / "acme.yaml").write_text(DOCUMENT, encoding="utf-8")
    (tmp_path / "policies" / "deep" / "up").symlink_to(tmp_path)
    with pytest.raises(PolicyError) as caught:
        load_directory(tmp_path / "policies")
    assert [(i.file, i.code) for i in caught.value.issues] == [
        (str(tmp_path / "policies" / "deep" / "up"), "SA101")]
    assert f"symbolic link loop: it leads to {tmp_path}, which contains it" in str(caught.value)


def test_a_loop_through_two_directories(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "policies" / "acme.yaml").write_text(DOCUMENT, encoding="utf-8")
    (tmp_path / "policies" / "x").symlink_to(tmp_path / "other")
    (tmp_path / "other" / "y").symlink_to(tmp_path / "policies")
    with pytest.raises(PolicyError, match="symbolic link loop") as caught:
        load_directory(tmp_path / "policies")
    assert caught.value.file == str(tmp_path / "policies" / "x" / "y")


def test_only_bad_entries_still_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path)
    with pytest.raises(PolicyError) as caught:
        load_directory(tmp_path)
    assert [i.message for i in caught.value.issues] == [
        f"symbolic link loop: it leads to {tmp_path}, which contains it"]  # not "no documents"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_file_that_grows_past_the_limit_while_read(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc files report a size of 0 and then yield text: the read itself must stop at the limit.
    (tmp_path / "status.yaml").symlink_to("/proc/self/status")
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 100)
    with pytest.raises(PolicyError, match="over the limit MAX_FILE_BYTES = 100") as caught:
        read_text_file(tmp_path / "status.yaml")
    assert caught.value.issues[0].code == "SA108"


def test_read_text_file_names_the_display_path(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(PolicyError) as caught:
        read_text_file(tmp_path / "pipe", "policies/pipe")
    assert str(caught.value).startswith("policies/pipe: this is a named pipe (FIFO), not a file")


def test_a_path_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(PolicyError, match="cannot read: Not a directory"):
        read_text_file(tmp_path / "file.txt" / "acme.yaml")


def test_the_sample_is_read_unchanged(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "p")
    assert sorted(load_directory(tmp_path / "p").domains) == ["acme", "globex"]

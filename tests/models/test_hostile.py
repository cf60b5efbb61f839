"""Hostile and careless policy directories: every entry point refuses each one cleanly.

Each case is a directory holding one bad thing beside valid files (a good domain and a passing
policy test). ``load_directory`` and ``Authorizer.from_directory`` must raise ``PolicyError``
naming the file (and line); ``salesauthz check``, ``test`` and ``import`` must exit 1 or 2 with
that location, no traceback, within a couple of seconds (the alias bomb used to take minutes),
and ``import`` must leave the store exactly as it was. A bad *policy test* file is read by
``salesauthz test`` only: the other entry points must accept its directory.

Cases git can store live in ``tests/fixtures/hostile/<case>/`` with an ``expected.txt`` (file,
line or ``-``, code, a fragment of the message); the others (pipes, links, devices, bytes that
are not UTF-8 …) are built below.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from salesauthz import Authorizer, PolicyError
from salesauthz.adapters import open_adapter
from salesauthz.checker.cli import main
from salesauthz.checker.storage_commands import import_directory
from salesauthz.errors import PolicyIssue
from salesauthz.models import MAX_FILE_BYTES, load_directory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"
MAX_SECONDS = 10.0  # CPU seconds per call: a guard against runaway work (an alias bomb expands for
# minutes), not a performance measure; every case is refused in milliseconds on an idle machine

BESIDE_V1 = """\
domain: beside
resources:
  customer: [read]
departments:
  sales: {}
roles:
  rep:
    permissions:
      - scope: own
        customer: [read]
accounts:
  alice: {department: sales, roles: [rep]}
"""
# The directory's version adds bob: an import that went ahead would change the store.
BESIDE_V2 = BESIDE_V1 + "  bob: {department: sales, roles: [rep]}\n"
BESIDE_TEST = """\
domain: beside
tests:
  - check: {account: alice, action: read, record: {type: customer, owner: alice}}
    expect: allow
"""


@dataclass(frozen=True)
class Hostile:
    name: str
    file: str  # the file the error names, relative to the policy directory
    line: int | None  # the line it names (None: the problem has no line)
    code: str
    fragment: str
    build: Callable[[Path], None]  # writes the bad thing into the directory

    @property
    def tests_only(self) -> bool:
        return self.file.endswith(".test.yaml")

    def directory(self, parent: Path) -> Path:
        target = parent / "policies"
        target.mkdir()
        (target / "beside.yaml").write_text(BESIDE_V2, encoding="utf-8")
        (target / "beside.test.yaml").write_text(BESIDE_TEST, encoding="utf-8")
        self.build(target)
        return target

    def location(self, directory: Path) -> str:
        return f"{directory / self.file}:" + (f"{self.line}:" if self.line is not None else "")


def _static(name: str) -> Hostile:
    file, line, code, fragment = (FIXTURES / name / "expected.txt").read_text(encoding="utf-8").splitlines()

    def build(target: Path) -> None:
        for entry in (FIXTURES / name).iterdir():
            if entry.name != "expected.txt":
                shutil.copy(entry, target / entry.name)

    return Hostile(name, file, None if line == "-" else int(line), code, fragment, build)


def _bytes(file: str, data: bytes) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        (target / file).write_bytes(data)
    return build


def _fifo(file: str) -> Callable[[Path], None]:
    return lambda target: os.mkfifo(target / file)


def _link(file: str, points_to: str) -> Callable[[Path], None]:
    return lambda target: (target / file).symlink_to(points_to)


def _links(*pairs: tuple[str, str]) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        for file, points_to in pairs:
            (target / file).symlink_to(points_to)
    return build


def _proc_link(file: str, points_to: str) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        if not Path(points_to).exists():
            pytest.skip(f"{points_to} (a regular file whose read fails) exists only on Linux")
        (target / file).symlink_to(points_to)
    return build


def _socket(file: str) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(target / file))  # the file stays when the socket closes
    return build


def _directory(name: str, inside: dict[str, str] | None = None) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        (target / name).mkdir()
        for file, text in (inside or {}).items():
            (target / name / file).write_text(text, encoding="utf-8")
    return build


def _sparse(file: str, size: int) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        with (target / file).open("wb") as handle:
            handle.truncate(size)  # no data written: the size alone must refuse it
    return build


_GOOD = "domain: acme\nresources:\n  customer: [read]\naccounts:\n  bob: {roles: [nobody]}\n"
_MODEL = (Path(__file__).resolve().parents[2] / "policies" / "model.conf").read_bytes()
_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))

GENERATED = [
    Hostile("nul_byte", "acme.yaml", 2, "SA101", "a NUL byte",
            _bytes("acme.yaml", b"domain: acme\ndescription: a\x00b\n")),
    Hostile("escape_control_character", "acme.yaml", 2, "SA101", "U+001B (ESC) is not allowed",
            _bytes("acme.yaml", b"domain: acme\ndescription: \x1b[31mred\n")),
    Hostile("latin1_bytes", "acme.yaml", 2, "SA101", "not UTF-8: byte 0xE9",
            _bytes("acme.yaml", b"domain: acme\ndescription: caf\xe9\n")),
    Hostile("windows_1252_quotes", "acme.yaml", 3, "SA101", "not UTF-8: byte 0x93",
            _bytes("acme.yaml", b"domain: acme\n\ndescription: \x93quoted\x94\n")),
    Hostile("utf16_file", "acme.yaml", 1, "SA101", "UTF-16",
            _bytes("acme.yaml", "domain: acme\n".encode("utf-16"))),
    Hostile("binary_garbage", "acme.yaml", 1, "SA101", "not UTF-8: byte 0x89",
            _bytes("acme.yaml", _PNG)),
    Hostile("bom_and_crlf_line_numbers", "acme.yaml", 5, "SA130", "unknown role 'nobody'",
            _bytes("acme.yaml", b"\xef\xbb\xbf" + _GOOD.replace("\n", "\r\n").encode())),
    Hostile("old_mac_line_ends", "acme.yaml", 5, "SA130", "unknown role 'nobody'",
            _bytes("acme.yaml", _GOOD.replace("\n", "\r").encode())),
    Hostile("megabyte_long_line", "acme.yaml", 2, "SA102", "description: expected text, not a mapping",
            _bytes("acme.yaml", b"domain: acme\ndescription: {text: " + b"x" * 2**20 + b"}\n")),
    Hostile("file_over_the_size_limit", "acme.yaml", None, "SA108",
            f"over the limit MAX_FILE_BYTES = {MAX_FILE_BYTES:,}", _sparse("acme.yaml", MAX_FILE_BYTES + 1)),
    Hostile("named_pipe", "pipe.yaml", None, "SA101", "named pipe (FIFO), not a file", _fifo("pipe.yaml")),
    Hostile("dangling_link", "gone.yaml", None, "SA101", "dangling symbolic link",
            _link("gone.yaml", "nowhere.yaml")),
    Hostile("link_to_itself", "self.yaml", None, "SA101", "symbolic link loop",
            _link("self.yaml", "self.yaml")),
    Hostile("two_links_in_a_loop", "a.yaml", None, "SA101", "symbolic link loop",
            _links(("a.yaml", "b.yaml"), ("b.yaml", "a.yaml"))),
    Hostile("directory_link_loop", "sub", None, "SA101", "symbolic link loop", _link("sub", ".")),
    Hostile("link_to_dev_zero", "zero.yaml", None, "SA101", "a character device, not a file",
            _link("zero.yaml", "/dev/zero")),
    Hostile("unix_socket", "socket.yaml", None, "SA101", "this is a socket, not a file",
            _socket("socket.yaml")),
    Hostile("link_to_a_file_that_fails_to_read", "mem.yaml", None, "SA101", "cannot read: Input/output error",
            _proc_link("mem.yaml", "/proc/self/mem")),
    Hostile("directory_named_yaml", "x.yaml", None, "SA101", "this is a directory, not a file",
            _directory("x.yaml")),
    Hostile("directory_named_yml_with_a_policy_inside", "x.yml", None, "SA101", "this is a directory",
            _directory("x.yml", {"acme.yaml": "domain: acme\n"})),
    Hostile("model_conf_is_a_directory", "model.conf", None, "SA101", "this is a directory",
            _directory("model.conf")),
    Hostile("model_conf_not_utf8", "model.conf", 2, "SA101", "not UTF-8: byte 0xFF",
            _bytes("model.conf", b"[request_definition]\nr = \xff\n")),
    Hostile("model_conf_with_nul", "model.conf", 1, "SA101", "a NUL byte",
            _bytes("model.conf", b"\x00" + _MODEL)),
    Hostile("model_conf_dangling_link", "model.conf", None, "SA101", "dangling symbolic link",
            _link("model.conf", "missing.conf")),
    Hostile("model_conf_named_pipe", "model.conf", None, "SA101", "named pipe", _fifo("model.conf")),
    Hostile("test_file_named_pipe", "acme.test.yaml", None, "SA101", "named pipe",
            _fifo("acme.test.yaml")),
    Hostile("test_file_dangling_link", "acme.test.yaml", None, "SA101", "dangling symbolic link",
            _link("acme.test.yaml", "nowhere.test.yaml")),
    Hostile("test_file_is_a_directory", "acme.test.yaml", None, "SA101", "this is a directory",
            _directory("acme.test.yaml")),
    Hostile("test_file_latin1", "acme.test.yaml", 1, "SA101", "not UTF-8",
            _bytes("acme.test.yaml", b"domain: caf\xe9\n")),
    Hostile("test_file_nul_byte", "acme.test.yaml", 2, "SA101", "a NUL byte",
            _bytes("acme.test.yaml", b"domain: beside\ntests: [\x00]\n")),
]

STATIC = [_static(p.name) for p in sorted(FIXTURES.iterdir()) if p.is_dir()]
CASES = STATIC + GENERATED


def test_there_are_at_least_40_hostile_policy_files() -> None:
    policy_cases = [c for c in CASES if not c.tests_only]
    assert len(policy_cases) >= 40, len(policy_cases)
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding the valid domain as it was before (without bob)."""
    source = tmp_path_factory.mktemp("v1")
    (source / "beside.yaml").write_text(BESIDE_V1, encoding="utf-8")
    database = tmp_path_factory.mktemp("store") / "store.db"
    import_directory(source, f"sqlite:///{database}")
    return database


def _matching(issues: tuple[PolicyIssue, ...], case: Hostile, directory: Path) -> PolicyIssue:
    found = [i for i in issues if i.file == str(directory / case.file) and case.fragment in str(i)]
    assert found, f"no issue names {case.file} with {case.fragment!r}: {[str(i) for i in issues]}"
    issue = found[0]
    assert issue.code == case.code, str(issue)
    assert issue.line == case.line, str(issue)
    if case.line is not None:
        assert issue.column is not None
    return issue


def _refused(load: Callable[[Path], object], directory: Path) -> tuple[PolicyError, float]:
    start = time.process_time()
    with pytest.raises(PolicyError) as caught:
        load(directory)
    return caught.value, time.process_time() - start


def _timed(call: Callable[[], object]) -> float:
    start = time.process_time()  # CPU time: a loaded machine does not make it grow
    call()
    return time.process_time() - start


@pytest.mark.timeout(60)  # a regression that blocks (a pipe read, an alias bomb) fails, not hangs
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_entry_point_refuses_it(case: Hostile, tmp_path: Path, store_template: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    directory = case.directory(tmp_path)
    store = tmp_path / "store.db"
    shutil.copy(store_template, store)
    before = store.read_bytes()
    fresh = tmp_path / "fresh.db"
    seconds: dict[str, float] = {}

    def run(*argv: str) -> tuple[int, str]:
        codes: list[int] = []
        seconds[argv[0] + (" (new store)" if str(fresh) in argv[-1] else "")] = _timed(
            lambda: codes.append(main([*argv])))
        captured = capsys.readouterr()
        output = captured.out + captured.err
        assert "Traceback" not in output
        return codes[0], output

    if case.tests_only:
        # Only `salesauthz test` reads policy tests: the others take the directory as it is.
        load_directory(directory)
        Authorizer.from_directory(directory).close()
        assert run("check", str(directory), "--no-color")[0] == 0
        assert run("import", str(directory), "--into", f"sqlite:///{store}")[0] == 0
        assert store.read_bytes() != before  # the control: this harness sees a write
    else:
        for name, load in (("load_directory", load_directory), ("from_directory", Authorizer.from_directory)):
            error, seconds[name] = _refused(load, directory)
            _matching(error.issues, case, directory)
        for argv in (("check", str(directory), "--no-color"),
                     ("import", str(directory), "--into", f"sqlite:///{store}"),
                     ("import", str(directory), "--into", f"sqlite:///{fresh}")):
            code, output = run(*argv)
            assert code in (1, 2), output
            assert case.location(directory) in output, output
            assert case.fragment in output
        assert "nothing was imported" in output
        assert store.read_bytes() == before
        assert not fresh.exists()
    code, output = run("test", str(directory), "--no-color")
    assert code in (1, 2), output
    assert case.location(directory) in output, output
    assert case.fragment in output
    slow = {name: round(took, 2) for name, took in seconds.items() if took > MAX_SECONDS}
    assert not slow, slow


def test_the_store_is_untouched_by_a_refused_import(tmp_path: Path, store_template: Path) -> None:
    # The byte comparison above, said in rules: the valid domain is still the old one.
    directory = next(c for c in CASES if c.name == "alias_bomb").directory(tmp_path)
    store = tmp_path / "store.db"
    shutil.copy(store_template, store)
    with pytest.raises(PolicyError):
        import_directory(directory, f"sqlite:///{store}")
    adapter = open_adapter(f"sqlite:///{store}")
    try:
        accounts = sorted(r[1] for r in adapter.load(["beside"]) if r[0] == "p3")
    finally:
        adapter.close()
    assert accounts == ["alice"]


SUBPROCESS_CASES = ["alias_bomb", "named_pipe", "link_to_itself", "latin1_bytes", "nesting_999_brackets",
                    "model_conf_is_a_directory"]


def _children_cpu() -> float:
    """CPU seconds used so far by this process's finished children."""
    import resource  # Unix only, as are these tests' named pipes and links

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_the_installed_command_refuses_it_quickly(name: str, tmp_path: Path) -> None:
    """The same through a real process: exit status, stderr and CPU time, interpreter start
    included (about half a second)."""
    case = next(c for c in CASES if c.name == name)
    directory = case.directory(tmp_path)
    for argv in (["check", str(directory)], ["import", str(directory), "--into",
                                              f"sqlite:///{tmp_path / 'new.db'}"]):
        start = _children_cpu()
        done = subprocess.run([sys.executable, "-m", "salesauthz.checker.cli", *argv], capture_output=True,
                              text=True, timeout=60, check=False)
        took = _children_cpu() - start
        output = done.stdout + done.stderr
        assert done.returncode in (1, 2), output
        assert "Traceback" not in output
        assert case.location(directory) in output
        assert took < MAX_SECONDS + 3.0, took  # interpreter and imports included
    assert not (tmp_path / "new.db").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="file modes do not stop root (nor apply on Windows): chmod 000 cannot "
                    "make a file unreadable here")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("domain: acme\n", encoding="utf-8")
    (tmp_path / "acme.yaml").chmod(0)
    try:
        with pytest.raises(PolicyError, match="cannot read: Permission denied") as caught:
            load_directory(tmp_path)
        assert caught.value.file == str(tmp_path / "acme.yaml")
    finally:
        (tmp_path / "acme.yaml").chmod(0o644)

"""Loading a policy directory: every ``*.yaml`` document (policy tests, ``*.test.yaml``, aside)
plus an optional ``model.conf``; all-or-nothing."""

from __future__ import annotations

import codecs
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from salesauthz._rules import Rule
from salesauthz._wording import value_kind
from salesauthz.errors import PolicyError, PolicyIssue

from ._yaml import MAX_FILE_BYTES, ParsedYaml, limit_issue, line_and_column, parse_yaml
from .compile import compile_document
from .validate import SourcedDocument, validate_documents, validate_schema

__all__ = [
    "LoadedPolicy",
    "Progress",
    "bundled_model_text",
    "load_directory",
    "load_document",
    "policy_files",
    "read_text_file",
    "yaml_files",
]

TEST_SUFFIXES = (".test.yaml", ".test.yml")

Progress = Callable[[str, int, int], None]
"""``report(phase, done, total)``: how far a long phase (``loading``, ``validating``) is."""
YAML_SUFFIXES = (".yaml", ".yml")


def bundled_model_text() -> str:
    """The Casbin model salesauthz expresses its semantics in (``model.conf``)."""
    return resources.files("salesauthz").joinpath("data/model.conf").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy directory."""

    root: Path
    documents: tuple[SourcedDocument, ...]
    rules: tuple[Rule, ...]

    @property
    def domains(self) -> list[str]:
        return [d.document.domain for d in self.documents]


def policy_files(root: Path) -> list[Path]:
    """The policy documents of a directory (recursively), tests excluded, in a stable order."""
    return [p for p in yaml_files(root)[0] if not p.name.endswith(TEST_SUFFIXES)]


def yaml_files(root: Path) -> tuple[list[Path], list[PolicyIssue]]:
    """Every entry under ``root`` named ``*.yaml`` or ``*.yml`` (policy documents and tests),
    hidden ones (``.git/`` …) aside, in a stable order; and the problems met on the way.

    An entry is listed by its name whatever it is — a directory called ``x.yaml``, a dangling
    link, a named pipe — so that reading it (:func:`read_text_file`) refuses it by name instead
    of it being skipped in silence. Links to directories are followed, except one that leads
    back into a directory it is in (a loop), which is a problem. A suffix in capitals
    (``x.YAML``) is a problem too: it would otherwise be skipped.
    """
    found: list[Path] = []
    issues: list[PolicyIssue] = []
    # Each directory to list, with the real paths of the directories it is in (to see loops).
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, (os.path.realpath(root),))]
    while stack:
        directory, chain = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            issues.append(PolicyIssue(f"cannot list this directory: {exc.strerror or exc}",
                                      str(directory), code="SA101"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.name.endswith(YAML_SUFFIXES):
                found.append(path)
            elif entry.name.lower().endswith(YAML_SUFFIXES):
                issues.append(PolicyIssue(
                    "the suffix must be lower-case .yaml or .yml; this file would not be read",
                    str(path), hint="rename it", code="SA101"))
            if not _is_directory(entry):
                continue
            target = os.path.realpath(path)
            if any(seen == target or seen.startswith(target.rstrip(os.sep) + os.sep) for seen in chain):
                issues.append(PolicyIssue(
                    f"symbolic link loop: it leads to {target}, which contains it",
                    str(path), hint="remove the link, or point it elsewhere", code="SA101"))
                continue
            stack.append((path, (*chain, target)))
    return sorted(found), issues


def _is_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links; False for a dangling one
    except OSError:  # a link loop (ELOOP)
        return False


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
# Open without blocking: a named pipe with no writer would otherwise wait forever. Links are
# followed (a link to a regular file is fine); the checks below look at what was opened.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_text_file(path: Path, display: str | None = None) -> str:
    """The text of a policy, test or model file.

    Raises :class:`PolicyError` naming the file (and line and column where there is one) if it
    is not a regular file (a directory, named pipe, device …), a dangling link or a link loop,
    cannot be read, is larger than :data:`~salesauthz.models._yaml.MAX_FILE_BYTES`, is not
    UTF-8 or holds a NUL byte. A UTF-8 byte-order mark is dropped. Never blocks on a pipe.
    """
    name = display if display is not None else str(path)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise PolicyError([_open_issue(path, name, exc)]) from None
    try:
        info = os.fstat(descriptor)
        for test, kind in _KINDS:
            if test(info.st_mode):
                raise PolicyError([PolicyIssue(
                    f"this is {kind}, not a file", name, code="SA101",
                    hint="its name (*.yaml, *.yml, model.conf) makes salesauthz read it as a "
                    "file; rename it or move it out of the policy directory" if kind == "a directory" else
                    "only regular files (or links to them) are read")])
        if info.st_size > MAX_FILE_BYTES:
            raise PolicyError([limit_issue(f"the file is {info.st_size:,} bytes", "MAX_FILE_BYTES",
                                           MAX_FILE_BYTES, name)])
        data = _read_at_most(descriptor, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError([PolicyIssue(f"cannot read: {exc.strerror or exc}", name, code="SA101")]) from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:  # it grew after fstat
        raise PolicyError([limit_issue(f"the file is over {MAX_FILE_BYTES:,} bytes", "MAX_FILE_BYTES",
                                       MAX_FILE_BYTES, name)])
    return _decode(data, name)


def _open_issue(path: Path, name: str, exc: OSError) -> PolicyIssue:
    if exc.errno == errno.ELOOP:
        return PolicyIssue("symbolic link loop: the link leads back to itself", name,
                           hint="point the link at a real file, or remove it", code="SA101")
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return PolicyIssue(f"dangling symbolic link: its target {os.readlink(path)!r} does not exist",
                           name, hint="point the link at a real file, or remove it", code="SA101")
    kind = _kind_of(path)  # a socket cannot even be opened (ENXIO): say what it is
    if kind is not None:
        return PolicyIssue(f"this is {kind}, not a file", name,
                           hint="only regular files (or links to them) are read", code="SA101")
    return PolicyIssue(f"cannot read: {exc.strerror or exc}", name, code="SA101")


def _kind_of(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(descriptor, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise PolicyError([PolicyIssue("the file is UTF-16 (it starts with a UTF-16 byte-order mark)",
                                       name, 1, 1, "save it as UTF-8", "SA101")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        raise PolicyError([PolicyIssue(
            f"not UTF-8: byte 0x{data[exc.start]:02X} cannot be decoded ({exc.reason})", name, line,
            column, "save the file as UTF-8 (is it Latin-1, Windows-1252 or a binary file?)",
            "SA101")]) from None
    nul = text.find("\x00")
    if nul >= 0:
        line, column = line_and_column(text, nul)
        raise PolicyError([PolicyIssue("a NUL byte: this is not a text file", name, line, column,
                                       "policy files are UTF-8 text", "SA101")])
    return text.removeprefix("\ufeff")


def load_document(text: str, file: str) -> SourcedDocument:
    """Parse and schema-check one document (no cross-reference checks); raises
    :class:`PolicyError` with every problem found."""
    parsed = parse_yaml(text, file)
    sourced, issues = schema_document(parsed, file)
    if issues or sourced is None:
        raise PolicyError(issues)
    return sourced


def schema_document(parsed: ParsedYaml, file: str) -> tuple[SourcedDocument | None, list[PolicyIssue]]:
    """The document read from ``parsed``, schema-checked, and every problem so far. The YAML
    problems that cost only their own part (a duplicate key …) and the schema errors come
    together, and the document — its failing parts neutralised — is returned for the
    cross-reference checks of the rest (:func:`~salesauthz.models.validate.validate_schema`);
    ``None`` when the file could not be read far enough."""
    issues = list(parsed.issues)
    if not parsed.complete:
        return None, issues
    data = parsed.data
    if data is None:
        if not issues:
            issues.append(PolicyIssue("the file is empty", file, 1, 1, "start with `domain: <name>`",
                                      "SA104"))
        return None, issues
    if not isinstance(data, dict):
        issues.append(PolicyIssue(f"a policy document is a mapping, not {value_kind(data)}",
                                  file, 1, 1, "start with `domain: <name>`", "SA102"))
        return None, issues
    sourced, schema_issues = validate_schema(data, file, parsed.positions, parsed.damaged)
    return sourced, issues + schema_issues


def _check_model(path: Path, display: str) -> list[PolicyIssue]:
    import casbin

    try:
        text = read_text_file(path, display)
    except PolicyError as exc:
        return list(exc.issues)
    try:
        model = casbin.Model()
        model.load_model_from_text(text)
    except Exception as exc:  # casbin raises assorted errors for a bad model
        return [PolicyIssue(f"invalid Casbin model: {exc}", display, None, None,
                            "start from the model.conf that `salesauthz init` writes", "SA105")]
    expected = casbin.Model()
    expected.load_model_from_text(bundled_model_text())
    issues = []
    for section in ("r", "p", "g", "m"):
        for key, assertion in expected.model.get(section, {}).items():
            mine = model.model.get(section, {}).get(key)
            if mine is None or mine.value != assertion.value:
                issues.append(PolicyIssue(
                    f"model.conf differs from salesauthz's model at [{section}] {key}",
                    display, _line_of(text, f"{key} ="), None,
                    "salesauthz decides by its own model; use the bundled model.conf unchanged",
                    "SA106"))
    return issues


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(needle):
            return number
    return None


def load_directory(path: str | os.PathLike[str], *, progress: Progress | None = None) -> LoadedPolicy:
    """Load, validate and compile every policy document under ``path``.

    Raises :class:`PolicyError` listing *every* problem (file, line, column) if anything is
    wrong — in one run, as far as the problems are independent: a duplicate key, an unknown key
    and a dangling reference in one file are reported together; a reference from a part that
    failed its schema is not checked. Nothing is returned half-loaded. ``progress`` is told how
    far the ``loading`` (bytes parsed) and ``validating`` phases are.
    """
    root = Path(path)
    if not root.is_dir():
        raise PolicyError([not_a_directory(root)])
    report = progress or _no_progress
    issues: list[PolicyIssue] = []
    model = root / "model.conf"
    if os.path.lexists(model):  # a dangling link too: refused by name, not skipped
        issues.extend(_check_model(model, str(model)))
    entries, walk_issues = yaml_files(root)
    issues.extend(walk_issues)
    files = [p for p in entries if not p.name.endswith(TEST_SUFFIXES)]
    if not files and not walk_issues:
        issues.append(PolicyIssue(f"no policy documents (*.yaml) in {root}", str(root), code="SA107",
                                  hint="run `salesauthz init` to start one"))
    sizes = [_size(file) for file in files]
    total, done = sum(sizes) or 1, 0
    report("loading", 0, total)
    parsed: list[tuple[Path, ParsedYaml]] = []
    for file, size in zip(files, sizes, strict=True):
        try:
            text = read_text_file(file)
        except PolicyError as exc:
            issues.extend(exc.issues)
        else:
            def read(characters: int, base: int = done, size: int = size) -> None:
                report("loading", base + min(characters, size), total)

            parsed.append((file, parse_yaml(text, str(file), progress=read)))
        done += size
        report("loading", done, total)
    steps = 2 * len(parsed) + 1  # schema per file, the cross-references, compiling per document
    report("validating", 0, steps)
    documents: list[SourcedDocument] = []
    for step, (file, read_file) in enumerate(parsed, 1):
        sourced, found = schema_document(read_file, str(file))
        issues.extend(found)
        if sourced is not None:
            documents.append(sourced)
        report("validating", step, steps)
    issues.extend(validate_documents(documents))
    report("validating", len(parsed) + 1, steps)
    if issues:
        raise PolicyError(issues)
    rules: list[Rule] = []
    for step, sourced in enumerate(documents, len(parsed) + 2):
        rules.extend(compile_document(sourced.document))
        report("validating", step, steps)
    report("validating", steps, steps)
    return LoadedPolicy(root, tuple(documents), tuple(rules))


def not_a_directory(root: Path) -> PolicyIssue:
    """SA107 for a policy directory that is missing, or not a directory."""
    if not os.path.lexists(root):
        return PolicyIssue(f"{root} does not exist", str(root), code="SA107",
                           hint="pass the directory that holds your policy YAML files "
                                "(`salesauthz init DIR` starts one)")
    return PolicyIssue(f"{root} is not a directory", str(root), code="SA107",
                       hint="pass the directory that holds your policy YAML files, not a file in it")


def _size(file: Path) -> int:
    try:
        return max(os.stat(file).st_size, 1)
    except OSError:  # reading it will say why
        return 1


def _no_progress(phase: str, done: int, total: int) -> None:
    del phase, done, total

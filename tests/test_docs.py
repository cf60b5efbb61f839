"""The documentation's examples are tests.

Every fenced ```` ```python ```` block in ``docs/**/*.md`` and ``README.md`` runs, and every
```` ```bash ````/```` ```console ```` block that invokes ``salesauthz`` runs against a copy of the
bundled ``policies/``. A page whose example breaks fails the suite.

How blocks run (also documented in CONTRIBUTING.md):

- **python** — the blocks of one page run in order in one shared namespace (like a doctest
  session), with ``__name__ == "__docs__"`` (so ``if __name__ == "__main__":`` guards a server
  start) and the working directory set to a scratch copy of the repository's ``policies/`` (and
  ``examples/``, when present). Each block is its own test: a failure names the page and line.
- **bash / sh / shell** — every command (``&&``-separated part of a line) whose program is
  ``salesauthz`` (or ``…/bin/salesauthz``) runs with ``bash -c``; other commands (``pip``,
  ``cd``, ``uvicorn`` …) are not run. Each must exit 0. When a block mentions ``git``, the
  scratch directory is a git repository with everything committed (for ``git:HEAD`` examples).
- **console** — lines starting with ``$ `` are commands, run as above; the lines after a command
  are its expected output: each must appear in what the command printed (whitespace is
  normalised; a line of ``...`` or ``…`` stands for omitted output).

A block opts out only with a marker comment on the line right before its opening fence:

    <!-- docs-test: skip (why: e.g. needs a PostgreSQL URL of your own) -->
    <!-- docs-test: exit=1 -->      (shell blocks: the commands are expected to exit with 1)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PYTHON_LANGS = {"python", "py"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
ELLIPSIS = {"...", "…"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    file: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # the body of a preceding ``<!-- docs-test: ... -->`` comment

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        if self.marker is None or not self.marker.startswith("skip"):
            return None
        return self.marker[len("skip"):].strip(" ()—-:") or ""

    @property
    def expected_exit(self) -> int:
        if self.marker is not None and (found := re.fullmatch(r"exit\s*=\s*(\d+)", self.marker)):
            return int(found.group(1))
        return 0


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` (indented ones, e.g. inside tabs or admonitions, too)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        end = number + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            body.append(lines[end][indent:] if not lines[end][:indent].strip() else lines[end].lstrip())
            end += 1
        previous = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        blocks.append(Block(path, number + 1, opening["lang"].lower(), "\n".join(body) + "\n",
                            marker["body"] if marker else None))
        number = end + 1
    return blocks


def documentation_files() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def _all_blocks() -> list[Block]:
    return [block for path in documentation_files() for block in parse_blocks(path)]


def salesauthz_commands(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``salesauthz`` invocation in a shell block."""
    commands: list[tuple[str, list[str]]] = []
    expected: list[str] | None = None  # where output lines of a console block go
    pending = ""
    console = block.lang == "console"
    for raw in block.code.splitlines():
        if console and not pending and not raw.startswith("$ "):
            if expected is not None and raw.strip():
                expected.append(raw)
            continue
        text = raw[2:] if console and not pending else raw
        if text.rstrip().endswith("\\"):
            pending += text.rstrip()[:-1] + " "
            continue
        line, pending = pending + text, ""
        expected = None
        for part in _salesauthz_parts(line):
            expected = []
            commands.append((part, expected))
    return commands


def _salesauthz_parts(line: str) -> list[str]:
    """The ``&&``-separated parts of a shell line whose program is ``salesauthz``."""
    parts = []
    for part in line.split("&&"):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        words = shlex.split(part, comments=True)
        if words and Path(words[0]).name == "salesauthz":
            program = part.split(None, 1)
            parts.append("salesauthz" + (" " + program[1] if len(program) > 1 else ""))
    return parts


def _scratch_copy(base: Path) -> Path:
    """A working directory holding copies of what examples may read."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "policies", base / "policies")
    if (ROOT / "examples").is_dir():
        shutil.copytree(ROOT / "examples", base / "examples",
                        ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return base


# -- collection ----------------------------------------------------------------------------

ALL_BLOCKS = _all_blocks()
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang in PYTHON_LANGS]
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in SHELL_LANGS and salesauthz_commands(b)]


def _param(block: Block) -> Any:
    marks = []
    if block.skip_reason is not None:
        marks.append(pytest.mark.skip(reason=f"docs-test marker: {block.skip_reason}"))
    return pytest.param(block, id=block.id, marks=marks)


# -- python blocks ---------------------------------------------------------------------------


@dataclass
class _PageSession:
    """The shared state of one page's Python blocks, run in order."""

    workdir: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__docs__"})
    done: set[int] = field(default_factory=set)
    failed: str | None = None


_sessions: dict[Path, _PageSession] = {}


def _run_python(block: Block, session: _PageSession) -> None:
    code = compile(block.code, f"{block.id} (```python block)", "exec", dont_inherit=True)
    # Examples print for the reader; keep the test output quiet.
    # No warning filter: an example that warns (a deprecated call, a test client backed by a
    # deprecated library) fails like any test, so readers never copy a warning.
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, session.namespace)


@pytest.mark.parametrize("block", [_param(b) for b in PYTHON_BLOCKS])
def test_python_block(block: Block, tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    session = _sessions.get(block.file)
    if session is None:
        workdir = _scratch_copy(tmp_path_factory.mktemp("docs") / "work")
        session = _sessions[block.file] = _PageSession(workdir)
    monkeypatch.chdir(session.workdir)
    # Run any earlier blocks of the page first (in case tests were selected or reordered).
    for earlier in PYTHON_BLOCKS:
        if earlier.file != block.file or earlier.line >= block.line or earlier.line in session.done:
            continue
        if earlier.skip_reason is None and session.failed is None:
            try:
                _run_python(earlier, session)
            except Exception as exc:
                session.failed = f"{earlier.id}: {exc!r}"
        session.done.add(earlier.line)
    if session.failed is not None:
        pytest.fail(f"an earlier block of this page failed ({session.failed})", pytrace=False)
    try:
        _run_python(block, session)
    except Exception:
        session.failed = block.id
        raise
    finally:
        session.done.add(block.line)


# -- shell blocks ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def salesauthz_on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose ``salesauthz`` is this interpreter running this source tree."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "salesauthz"
    shim.write_text(
        "#!/bin/sh\n"
        f'exec {shlex.quote(sys.executable)} -c '
        '"import sys; from salesauthz.checker.cli import main; sys.exit(main())" "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"  # no wrapping by rich; expected output is compared line by line
    env["NO_COLOR"] = "1"
    return env


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _make_git_repository(workdir: Path) -> None:
    """Commit the scratch copy, so examples like ``salesauthz diff git:HEAD policies/`` work."""
    git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@example.invalid",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "policies"]):
        subprocess.run([*git, *command], cwd=workdir, check=True, capture_output=True, timeout=60)


SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?~]|^\w+=")  # anything bash must interpret


def _run_command(command: str, workdir: Path, env: dict[str, str],
                 monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``(exit code, stdout + stderr)`` of one ``salesauthz`` command line.

    A plain command runs in this process (fast, and counted by coverage); one that needs a
    shell (pipes, redirections, variables, globs) runs under ``bash -c``.
    """
    if SHELL_SYNTAX.search(command):
        result = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        return result.returncode, result.stdout + result.stderr
    from salesauthz.checker.cli import main

    with monkeypatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("COLUMNS", env["COLUMNS"])
        patch.setenv("NO_COLOR", env["NO_COLOR"])
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            try:
                code = main(shlex.split(command, comments=True)[1:])
            except SystemExit as exc:  # a command may exit on its own
                code = exc.code if isinstance(exc.code, int) else 1
    return code, captured.getvalue()


@pytest.mark.parametrize("block", [_param(b) for b in SHELL_BLOCKS])
def test_shell_block(block: Block, tmp_path: Path, salesauthz_on_path: dict[str, str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = _scratch_copy(tmp_path / "work")
    if "git" in block.code:
        _make_git_repository(workdir)
    for command, expected in salesauthz_commands(block):
        code, printed = _run_command(command, workdir, salesauthz_on_path, monkeypatch)
        assert code == block.expected_exit, (
            f"{block.id}: `{command}` exited with {code}, expected {block.expected_exit}:\n{printed}"
        )
        flat = _normalise(printed)
        for line in expected:
            if line.strip() in ELLIPSIS:
                continue
            assert _normalise(line) in flat, (
                f"{block.id}: `{command}` did not print {line.strip()!r}; it printed:\n{printed}"
            )


def test_commands_needing_a_shell_run_under_bash(
    tmp_path: Path, salesauthz_on_path: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = _scratch_copy(tmp_path / "work")
    code, printed = _run_command("salesauthz --version | tr a-z A-Z", workdir, salesauthz_on_path,
                                 monkeypatch)
    assert code == 0
    assert "SALESAUTHZ" in printed
    code, printed = _run_command("salesauthz check no-such-dir", workdir, salesauthz_on_path,
                                 monkeypatch)
    assert code != 0
    assert "no-such-dir" in printed


# -- the collector itself, and generated pages ------------------------------------------------


def test_examples_are_collected() -> None:
    # Guards against the collector silently finding nothing (a renamed folder, a broken regex).
    assert len(PYTHON_BLOCKS) >= 10
    assert len(SHELL_BLOCKS) >= 2
    assert any(b.file.name == "README.md" for b in PYTHON_BLOCKS)


def test_skip_markers_give_a_reason() -> None:
    unexplained = [b.id for b in ALL_BLOCKS if b.skip_reason == ""]
    assert not unexplained, f"docs-test: skip needs a reason, e.g. (needs PostgreSQL): {unexplained}"


def test_parser_handles_markers_indentation_and_console_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        Intro.

        <!-- docs-test: exit=1 -->
        ```console
        $ salesauthz check bad/ \\
            --strict
        bad/x.yaml:1:1: error
        ...
        $ echo not run
        ```

        === "Tab"

            ```python
            x = 1
            ```

        <!-- docs-test: skip (needs a server) -->
        ```bash
        pip install salesauthz && .venv/bin/salesauthz check policies/  # trailing comment
        ```
        """), encoding="utf-8")
    console, python, bash = parse_blocks(page)
    assert (console.lang, console.line, console.expected_exit) == ("console", 4, 1)
    assert salesauthz_commands(console) == [
        ("salesauthz check bad/      --strict", ["bad/x.yaml:1:1: error", "..."]),
    ]
    assert (python.lang, python.code, python.marker) == ("python", "x = 1\n", None)
    assert bash.skip_reason == "needs a server"
    assert bash.expected_exit == 0
    assert salesauthz_commands(bash) == [("salesauthz check policies/  # trailing comment", [])]


def test_policy_reference_is_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_policy_reference", DOCS / "gen_policy_reference.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (DOCS / "policy-reference.md").read_text(encoding="utf-8")
    assert committed == generator.render(), (
        "docs/policy-reference.md is stale: run `python docs/gen_policy_reference.py`"
    )


def test_contributing_states_the_coverage_gate() -> None:
    gate = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["coverage"]["report"]
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert f"`pyproject.toml`: {gate['fail_under']} %" in contributing


def test_example_crm_readme_installs_what_the_example_imports() -> None:
    """Every third-party module the example CRM imports comes from an extra (or a package) that
    its README's install command names."""
    import ast
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    example = ROOT / "examples" / "crm_api"
    readme = (example / "README.md").read_text(encoding="utf-8")
    install = re.search(r'pip install -e "\.\[([a-z,]+)\]"((?: [\w-]+)*)', readme)
    assert install is not None, "the README has no install command"
    extras, packages = set(install.group(1).split(",")), set(install.group(2).split())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"],
             *(spec for extra in extras for spec in project["optional-dependencies"][extra])]
    provided = {Requirement(spec).name.lower() for spec in specs} | {name.lower() for name in packages}
    distributions = packages_distributions()
    imported: set[str] = set()
    for path in example.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(module for module in imported if module not in sys.stdlib_module_names
                         and module not in {"salesauthz", "examples"})
    assert {"fastapi", "sqlalchemy", "uvicorn"} <= set(third_party)
    for module in third_party:
        names = {name.lower() for name in distributions.get(module, [module])}
        assert names & provided, f"the example imports {module}, which {install.group(0)!r} does not install"

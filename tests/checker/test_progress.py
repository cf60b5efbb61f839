"""The progress line: drawn on a terminal (a real pseudo-terminal here) through every long phase,
with rich or without it; never in a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from salesauthz.checker.output import Output

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
ACCOUNTS = 2_400  # enough for several redraws of every phase, fast enough for the suite

# Runs the CLI with rich importable, or as if the `rich` extra were not installed.
PRELUDE = {
    "rich": "",
    "plain": "import sys; sys.modules['rich'] = None; ",
}


def _organisation(directory: Path, accounts: int = ACCOUNTS) -> Path:
    """Two domains (two files) of ``accounts`` accounts in all, with a policy test."""
    directory.mkdir()
    for number, domain in enumerate(("north", "south")):
        lines = [f"domain: {domain}", "resources:", "  customer: [read, update]",
                 "departments:", "  sales: {}", "  east: {parent: sales}",
                 "roles:", "  rep:", "    permissions:", "      - scope: team", "        customer: [read]",
                 "  admin:", "    permissions:", "      - scope: all", "        '*': ['*']",
                 "accounts:", "  boss: {department: sales, roles: [admin]}"]
        lines += [f"  a{number}_{i}: {{department: east, roles: [rep]}}" for i in range(accounts // 2)]
        (directory / f"{domain}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    check = "{{account: a0_{}, action: read, record: {{type: customer, owner: a0_0}}}}"
    cases = "\n".join(f"  - check: {check.format(i)}\n    expect: allow" for i in range(300))
    (directory / "north.test.yaml").write_text(f"domain: north\ntests:\n{cases}\n", encoding="utf-8")
    return directory


def _run(argv: list[str], *, terminal: bool, mode: str = "rich") -> tuple[int, str, str]:
    """Run ``salesauthz argv`` in a fresh process; stderr on a pseudo-terminal (``terminal``) or
    a pipe. Returns the exit code, stdout and what stderr showed."""
    code = f"{PRELUDE[mode]}from salesauthz.checker.cli import main; raise SystemExit(main({argv!r}))"
    command = [sys.executable, "-c", code]
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
        return done.returncode, done.stdout, done.stderr
    controller, child = pty.openpty()
    with subprocess.Popen(command, stdin=child, stdout=subprocess.PIPE, stderr=child, env=env) as process:
        os.close(child)
        shown = bytearray()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the child end is closed (the process is done)
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        assert process.stdout is not None
        stdout = process.stdout.read().decode("utf-8")
        returncode = process.wait(timeout=30)
    os.close(controller)
    return returncode, stdout, shown.decode("utf-8", "replace")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FRAME = re.compile(r"(loading|validating|linting|testing|importing|reviewing)\b.*?(\d{1,3})%")


def _frames(screen: str) -> list[tuple[str, int]]:
    """The (phase, percentage) frames drawn, in order."""
    frames = []
    for piece in re.split(r"[\r\n]", _ANSI.sub("", screen)):
        match = _FRAME.search(piece)
        if match:
            frames.append((match.group(1), int(match.group(2))))
    return frames


def _phases(frames: list[tuple[str, int]]) -> dict[str, list[int]]:
    """Percentages per phase, checking that phases come one after another (never interleaved)."""
    order: list[str] = []
    by_phase: dict[str, list[int]] = {}
    for phase, percent in frames:
        if not order or order[-1] != phase:
            assert phase not in order, f"phase {phase} came back after another: {frames}"
            order.append(phase)
        by_phase.setdefault(phase, []).append(percent)
    return by_phase


def _assert_moves(percentages: list[int], phase: str) -> None:
    assert percentages[0] == 0, (phase, percentages)
    assert percentages[-1] == 100, (phase, percentages)
    assert percentages == sorted(percentages), (phase, percentages)
    assert any(0 < p < 100 for p in percentages), (phase, percentages)  # it moves, not 0 then 100


@pytest.mark.parametrize("mode", ["rich", "plain"])
def test_check_shows_every_phase_moving_on_a_terminal(tmp_path: Path, mode: str) -> None:
    directory = _organisation(tmp_path / "org")
    code, stdout, screen = _run(["check", str(directory)], terminal=True, mode=mode)
    assert code == 0, stdout + screen
    phases = _phases(_frames(screen))
    assert list(phases) == ["loading", "validating", "linting"]
    for phase, percentages in phases.items():
        _assert_moves(percentages, phase)
    assert "ok: 2 domains" in stdout
    assert "%" not in stdout
    # The line is wiped at the end: what the terminal shows last is blank.
    assert _ANSI.sub("", screen).rsplit("\r", 1)[-1].strip() == ""


@pytest.mark.parametrize("mode", ["rich", "plain"])
def test_test_and_import_show_their_phases(tmp_path: Path, mode: str) -> None:
    directory = _organisation(tmp_path / "org")
    code, stdout, screen = _run(["test", str(directory)], terminal=True, mode=mode)
    assert code == 0, stdout + screen
    phases = _phases(_frames(screen))
    assert list(phases) == ["loading", "validating", "testing"]
    for phase, percentages in phases.items():
        _assert_moves(percentages, phase)
    assert "300 passed, 0 failed (1 file)" in stdout

    code, stdout, screen = _run(["import", str(directory), "--into", f"sqlite:///{tmp_path / 's.db'}"],
                                terminal=True, mode=mode)
    assert code == 0, stdout + screen
    phases = _phases(_frames(screen))
    assert list(phases) == ["loading", "validating", "importing"]
    for phase, percentages in phases.items():
        _assert_moves(percentages, phase)


def test_no_progress_noise_when_not_a_terminal(tmp_path: Path) -> None:
    directory = _organisation(tmp_path / "org")
    for argv in (["check", str(directory)], ["test", str(directory)],
                 ["import", str(directory), "--into", f"sqlite:///{tmp_path / 's.db'}"]):
        code, stdout, stderr = _run(argv, terminal=False)
        assert code == 0, stdout + stderr
        assert stderr == ""
        assert "\r" not in stdout
        assert "\x1b" not in stdout
        assert not _frames(stdout)


@pytest.mark.parametrize("rich", [True, False])
def test_the_line_redraws_only_when_the_percentage_moves(rich: bool) -> None:
    screen = _Terminal()
    out = Output()
    out.rich = rich
    with out.progress(screen) as report:
        for done in range(10_001):
            report("linting", done, 10_000)
    frames = _frames(screen.getvalue())
    # One frame per whole percent, not one per report (rich draws the last one again as it stops).
    assert 101 <= len(frames) <= 102
    assert [p for _, p in frames] == sorted(p for _, p in frames)
    if not rich:
        assert screen.getvalue().endswith(" \r")  # wiped


def test_nothing_is_drawn_into_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with Output().progress() as report:  # stderr is pytest's capture: not a terminal
        report("linting", 5, 10)
        report("linting", 10, 10)
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

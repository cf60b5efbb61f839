"""Terminal, JSON and SARIF output for the ``salesauthz`` commands.

Terminal output goes through rich when it is installed (the ``rich`` extra): coloured on a
terminal, plain text when stdout is not a terminal or with ``--no-color`` (rich then writes no
escape codes). Without rich it is the same text, uncoloured, and the progress line is drawn in
plain text. Machine formats are written with plain ``print`` so nothing can decorate them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from salesauthz import __version__
from salesauthz._wording import DOCS_URL, docs_url

from .findings import Finding, title_of

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DOCS_URL", "Output", "Progress", "help_uri", "sarif_report"]


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def _rich_available() -> bool:
    try:
        import rich.console  # noqa: F401  (rich is the optional `rich` extra)
    except ImportError:
        return False
    return True


class Output:
    """Where a command writes: ``text`` lines (styled), ``data`` (JSON) and a progress bar.

    Styling needs rich (the ``rich`` extra); without it output is plain, never missing."""

    def __init__(self, *, no_color: bool = False) -> None:
        self.no_color = no_color
        self.rich = _rich_available()
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stdout, no_color=self.no_color, highlight=False,
                                    soft_wrap=True, emoji=False,
                                    color_system=None if self.no_color else "auto")
        return self._console

    def text(self, line: str = "", style: str | None = None) -> None:
        if not self.rich:
            print(line)
            return
        self.console.print(line, style=style, markup=False)

    def styled(self, *parts: tuple[str, str | None]) -> None:
        """One line made of ``(text, style)`` parts."""
        if not self.rich:
            print("".join(p for p, _ in parts))
            return
        from rich.text import Text

        self.console.print(Text.assemble(*((p, s or "") for p, s in parts)))

    def data(self, payload: Any) -> None:
        print(json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False))

    def raw(self, text: str) -> None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
        """A table on a terminal; aligned plain columns otherwise (easy to grep)."""
        if self.rich and not self.no_color and self.console.is_terminal:
            from rich.table import Table

            table = Table(*headers, title=title, show_lines=False)
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
            return
        if title:
            self.text(title)
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        for row in [list(headers), *[list(r) for r in rows]]:
            self.text("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())

    def finding(self, finding: Finding) -> None:
        self.styled((finding.location() + ": ", "bold"),
                    (f"{finding.severity} {finding.code}", _SEVERITY_STYLE[finding.severity]),
                    (": " + finding.message, None))
        if finding.hint:
            self.styled(("    hint: ", "dim"), (finding.hint, "dim"))

    @contextmanager
    def progress(self, stream: TextIO | None = None) -> Iterator[Progress]:
        """A progress line on stderr, drawn only when it is a terminal (a pipe, a file or CI
        logs get none); yields the function a long phase reports to: ``report(phase, done,
        total)``. Drawn with rich when it is installed, as a plain text line otherwise."""
        target = stream if stream is not None else sys.stderr
        if not _is_terminal(target):
            yield _no_progress
            return
        bar: _Bar = _RichBar(target, self.no_color) if self.rich else _PlainBar(target)
        try:
            yield bar.report
        finally:
            bar.close()


Progress = Callable[[str, int, int], None]
"""``report(phase, done, total)``: a long phase (``loading``, ``validating``, ``linting`` …)
has done ``done`` of ``total`` units."""


def _no_progress(phase: str, done: int, total: int) -> None:
    del phase, done, total


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _Bar:
    """Redraws only when the phase or the whole percentage changes: at most ~100 redraws a
    phase, whatever the number of reports (and the same frames on a fast or a slow machine)."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.percent = -1

    def report(self, phase: str, done: int, total: int) -> None:
        percent = 100 if total <= 0 else max(0, min(100, done * 100 // total))
        if phase == self.phase and percent == self.percent:
            return
        new_phase = phase != self.phase
        self.phase, self.percent = phase, percent
        self.draw(phase, percent, new_phase)

    def draw(self, phase: str, percent: int, new_phase: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PlainBar(_Bar):
    """``linting     [##########..........]  50%`` rewritten in place with a carriage return,
    and wiped at the end (the command's own output follows on a clean line)."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.drawn = 0

    def draw(self, phase: str, percent: int, new_phase: bool) -> None:
        del new_phase
        filled = self.WIDTH * percent // 100
        line = f"{phase:<11} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d}%"
        self.stream.write("\r" + line.ljust(self.drawn))
        self.stream.flush()
        self.drawn = len(line)

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()


class _RichBar(_Bar):
    def __init__(self, stream: TextIO, no_color: bool) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn
        from rich.progress import Progress as RichProgress

        console = Console(file=stream, no_color=no_color, force_terminal=True)
        # No refresh thread: a frame is drawn when the percentage moves (see _Bar).
        self.bar = RichProgress(TextColumn("{task.description:<11}"), BarColumn(), TaskProgressColumn(),
                            console=console, transient=True, auto_refresh=False)
        self.bar.start()
        self.task = self.bar.add_task("", total=100)

    def draw(self, phase: str, percent: int, new_phase: bool) -> None:
        del new_phase
        self.bar.update(self.task, description=phase, completed=percent)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.stop()


def help_uri(code: str) -> str:
    """Where the checker reference explains finding ``code`` (its heading's anchor)."""
    return docs_url("checker", code.lower())


def sarif_report(findings: Sequence[Finding], base: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log of ``findings`` (code-scanning tools show them on the policy lines)."""
    codes = sorted({f.code for f in findings})
    rules = [{
        "id": code,
        "name": code,
        "shortDescription": {"text": title_of(code)},
        "helpUri": help_uri(code),
    } for code in codes]
    results = []
    for finding in findings:
        result: dict[str, Any] = {
            "ruleId": finding.code,
            "ruleIndex": codes.index(finding.code),
            "level": finding.severity,
            "message": {"text": finding.message + (f" (hint: {finding.hint})" if finding.hint else "")},
        }
        if finding.file is not None:
            region: dict[str, int] = {}
            if finding.line is not None:
                region["startLine"] = finding.line
                if finding.column is not None:
                    region["startColumn"] = finding.column
            location: dict[str, Any] = {"artifactLocation": {"uri": _uri(finding.file, base)}}
            if region:
                location["region"] = region
            result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "salesauthz", "version": __version__,
                                "informationUri": DOCS_URL,
                                "rules": rules}},
            "results": results,
        }],
    }


def _uri(file: str, base: Path | None) -> str:
    path = Path(file)
    if base is not None:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()

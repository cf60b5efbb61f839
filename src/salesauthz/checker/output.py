"""Terminal, JSON and SARIF output for the ``salesauthz`` commands.

Terminal output goes through rich: coloured on a terminal, plain text when stdout is not a
terminal or with ``--no-color`` (rich then writes no escape codes). Machine formats are written
with plain ``print`` so nothing can decorate them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salesauthz import __version__

from .findings import Finding, title_of

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DOCS_URL", "Output", "help_uri", "sarif_report"]

DOCS_URL = "https://salesauthz.readthedocs.io/"
"""The documentation site (``site_url`` in mkdocs.yml)."""

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
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """A transient rich progress bar on stderr, shown only on a terminal; yields a function
        ``advance(done, total)``."""
        if not self.rich:
            yield lambda done, total: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        console = Console(file=sys.stderr, no_color=self.no_color)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                       console=console, transient=True, disable=not console.is_terminal)
        with bar:
            task = bar.add_task(description, total=max(total, 1))

            def advance(done: int, new_total: int) -> None:
                bar.update(task, completed=done, total=max(new_total, 1))

            yield advance


def help_uri(code: str) -> str:
    """Where the checker reference explains finding ``code`` (its heading's anchor)."""
    return f"{DOCS_URL}checker/#{code.lower()}"


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

"""``salesauthz init``: scaffold a starter policy directory.

A template is a directory under ``salesauthz/data/templates/``; ``init`` copies its files and
the bundled ``model.conf`` into the target directory. It never overwrites a file: if any file it
would write already exists, it writes nothing and says which.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TEMPLATE", "register", "scaffold", "templates"]

DEFAULT_TEMPLATE = "sales-team"
EXIT_OK = 0
EXIT_USAGE = 2


def _templates_root() -> Traversable:
    return resources.files("salesauthz").joinpath("data/templates")


def templates() -> list[str]:
    """The names of the bundled templates."""
    return sorted(entry.name for entry in _templates_root().iterdir() if entry.is_dir())


def _template_files(name: str) -> dict[str, str]:
    """``relative path → text`` of everything ``init`` writes for template ``name``."""
    from salesauthz.models.loader import bundled_model_text  # lazy: every CLI call builds the parser

    files = {"model.conf": bundled_model_text()}
    pending: list[tuple[str, Traversable]] = [("", _templates_root().joinpath(name))]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.name.startswith((".", "__")):  # __pycache__, editor droppings
                continue
            relative = prefix + entry.name
            if entry.is_dir():
                pending.append((relative + "/", entry))
            else:
                files[relative] = entry.read_text(encoding="utf-8")
    return dict(sorted(files.items()))


def scaffold(directory: str | Path, template: str = DEFAULT_TEMPLATE) -> list[Path]:
    """Write template ``template`` into ``directory`` (created if missing); return the files.

    Raises:
        ValueError: the template does not exist.
        FileExistsError: a file to be written exists already (nothing is written), or
            ``directory`` is an existing file.
    """
    if template not in templates():
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join(templates())}")
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    files = _template_files(template)
    clashes = [root / relative for relative in files if (root / relative).exists()]
    if clashes:
        raise FileExistsError(
            "would overwrite " + ", ".join(str(path) for path in clashes)
            + "; choose a new or empty directory"
        )
    written = []
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _cmd_init(args: argparse.Namespace) -> int:
    try:
        written = scaffold(args.directory, args.template)
    except (FileExistsError, ValueError) as exc:
        print(f"salesauthz init: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # permissions, read-only file systems: say what and where
        print(f"salesauthz init: error: cannot write {args.directory}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(f"created {path}")
    print(f"\nnext: salesauthz check {args.directory}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``salesauthz`` parser."""
    init = commands.add_parser(
        "init",
        help="scaffold a starter policy directory",
        description="Write a starter policy directory: the Casbin model, a small sales "
        "organisation, its policy tests and a README for policy authors. "
        "Existing files are never overwritten.",
    )
    init.add_argument("directory", metavar="DIR", help="where to write it (created if missing)")
    init.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        choices=templates(),
        help=f"which starter organisation (default: {DEFAULT_TEMPLATE})",
    )
    init.set_defaults(handler=_cmd_init)

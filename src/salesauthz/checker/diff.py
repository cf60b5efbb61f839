"""``salesauthz diff OLD NEW``: who gains or loses which *effective* access between two versions.

Rule text is not compared: both versions are compiled and, for every account of every domain,
the effective permission maps (roles closed over inheritance, scopes resolved against the
department tree, parent ceilings applied, inactive accounts empty) are compared over the
natural records of the domain (see :mod:`salesauthz.checker.analysis`). A new rule that only
repeats what an account could already do is therefore no change at all.

``OLD``/``NEW`` are directories, or ``git:REV`` (the same directory as the other side, at that
revision of its repository) or ``git:REV:PATH``.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from salesauthz import _engine as engine
from salesauthz._engine import Snapshot
from salesauthz._wording import count
from salesauthz.errors import PolicyError, UsageError
from salesauthz.models.loader import load_directory

from .analysis import excess, permission_text, scope_label
from .output import Output

__all__ = ["Change", "DiffResult", "diff_directories", "diff_sources", "render_diff"]


@dataclass(frozen=True, slots=True)
class Change:
    domain: str
    account: str
    kind: Literal["gain", "loss"]
    permission: str  # type:action@scope after the change (gain) or before it (loss)
    before: str | None  # the scope label before (None: not held at all)
    after: str | None
    records: str  # which natural records are gained or lost

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "account": self.account, "kind": self.kind,
                "permission": self.permission, "before": self.before, "after": self.after,
                "records": self.records}


@dataclass(slots=True)
class DiffResult:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)

    @property
    def gains(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "gain"]

    @property
    def losses(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "loss"]


def diff_snapshots(old: dict[str, Snapshot], new: dict[str, Snapshot], now: float) -> list[Change]:
    changes: list[Change] = []
    for domain in sorted(set(old) | set(new)):
        before_index, after_index = old.get(domain), new.get(domain)
        accounts = set(before_index.accounts if before_index else ()) | set(
            after_index.accounts if after_index else ())
        for account in sorted(accounts):
            before = engine.effective(before_index, account, now)[0] if before_index else {}
            after = engine.effective(after_index, account, now)[0] if after_index else {}
            for key in sorted(set(before) | set(after)):
                was, now_held = before.get(key), after.get(key)
                was_label = scope_label(before_index, account, key, now) if was and before_index else None
                new_label = scope_label(after_index, account, key, now) if now_held and after_index else None
                if now_held is not None and after_index is not None:
                    gained = excess(now_held, was, after_index)
                    if gained:
                        changes.append(Change(domain, account, "gain",
                                              permission_text(key, new_label or "?"), was_label,
                                              new_label, gained.describe()))
                if was is not None and before_index is not None:
                    lost = excess(was, now_held, before_index)
                    if lost:
                        changes.append(Change(domain, account, "loss",
                                              permission_text(key, was_label or "?"), was_label,
                                              new_label, lost.describe()))
    return changes


def diff_directories(old: Path, new: Path, *, now: float | None = None, old_label: str | None = None,
                     new_label: str | None = None) -> DiffResult:
    moment = time.time() if now is None else now
    indexes = []
    for path in (old, new):
        try:
            indexes.append(engine.compile_domains(load_directory(path).rules))
        except PolicyError as exc:
            raise UsageError(f"cannot load {path} (run `salesauthz check`): {exc}") from None
    result = DiffResult(old_label or str(old), new_label or str(new))
    result.changes = diff_snapshots(indexes[0], indexes[1], moment)
    return result


def diff_sources(old: str, new: str, *, now: float | None = None) -> DiffResult:
    """Diff two specs (directories or ``git:REV[:PATH]``)."""
    with tempfile.TemporaryDirectory(prefix="salesauthz-diff-") as scratch:
        old_path = _materialise(old, new, Path(scratch) / "old")
        new_path = _materialise(new, old, Path(scratch) / "new")
        return diff_directories(old_path, new_path, now=now, old_label=old, new_label=new)


def _materialise(spec: str, other: str, scratch: Path) -> Path:
    if not spec.startswith("git:"):
        path = Path(spec)
        if not path.is_dir():
            raise UsageError(f"{spec} is not a directory (or git:REV[:PATH])")
        return path
    revision, _, inner = spec[len("git:"):].partition(":")
    if not revision:
        raise UsageError(f"{spec!r}: name a revision, e.g. git:HEAD or git:main:policies")
    if not inner:
        inner = other if not other.startswith("git:") else "policies"
    target = Path(inner).resolve()
    top = _git(Path.cwd(), "rev-parse", "--show-toplevel").strip()  # "the working repo"
    try:
        relative = target.relative_to(Path(top).resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{inner} is not inside the git repository at {top}") from None
    listing = _git(Path(top), "ls-tree", "-r", "--name-only", revision, "--", relative or ".")
    files = [name for name in listing.splitlines() if name.endswith((".yaml", ".yml", ".conf"))]
    if not files:
        raise UsageError(f"no policy files under {relative or '.'} at revision {revision}")
    for name in files:
        content = _git(Path(top), "show", f"{revision}:{name}")
        destination = scratch / Path(name).relative_to(relative) if relative else scratch / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(content, encoding="utf-8")
    return scratch


def _git(where: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def render_diff(result: DiffResult, out: Output, *, fmt: str = "text") -> None:
    if fmt == "json":
        out.data({"old": result.old, "new": result.new, "gains": len(result.gains),
                  "losses": len(result.losses), "changes": [c.to_json() for c in result.changes]})
        return
    if not result.changes:
        out.text(f"no change in effective access between {result.old} and {result.new}", style="green")
        return
    for change in result.changes:
        sign, style = ("+", "green") if change.kind == "gain" else ("-", "red")
        was = f" (was {change.before})" if change.kind == "gain" and change.before else ""
        now = f" (now {change.after})" if change.kind == "loss" and change.after else ""
        out.styled((f"{sign} ", style), (f"{change.domain}  {change.account}  ", "bold"),
                   (f"{'gains' if change.kind == 'gain' else 'loses'} {change.permission}{was}{now}", style),
                   (f"  [{change.records}]", "dim"))
    out.text(f"{count(len(result.gains), 'gain')}, {count(len(result.losses), 'loss')} between "
             f"{result.old} and {result.new}")

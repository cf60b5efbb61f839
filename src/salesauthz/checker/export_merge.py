"""Writing a store's domain as a policy document *into an existing one* (``salesauthz export``).

A store holds rules: descriptions and comments — ``# salesauthz: ignore[…]`` suppressions among
them — are not rules, and a document rebuilt from rules alone loses them (its ``check`` then
reports the findings the comments silenced). So export merges: the rules come from the store,
and from the domain's existing document (the one in the target directory, or in ``--base``) it
keeps

- the descriptions of the domain, and of each department and role still in the store;
- every comment, put back at the key it annotated (a comment whose key is gone is dropped, and
  counted); a suppression keeps silencing the same keys, wherever the new layout puts them;
- the order of keys and list items, and whether each mapping or list was written on one line
  (``{department: sales, roles: [rep]}``) or as a block — so the git diff of an export shows what
  changed in the store, not a reformatting.

A key is found again by its place in the document, with list items named by what they are (a
role by its name, a permission set by its scope and expiry), not by their position in a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from salesauthz import _rules as R
from salesauthz.models._yaml import Path, Positions, load_yaml
from salesauthz.models.compile import scope_of
from salesauthz.models.documents import DomainDocument, PermissionSet

__all__ = ["Merged", "document_data", "render_document"]

# libyaml's scanner where PyYAML has it (the C and Python scanners give the same tokens).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_IGNORE = re.compile(r"#\s*salesauthz:\s*ignore(?:\[([A-Za-z0-9_,\s]+)\])?")
_FLOW_WIDTH = 100  # a new collection is written on one line when it holds no mapping and fits


@dataclass(slots=True)
class Merged:
    """A document's text, and what the merge with the existing one kept and dropped."""

    text: str
    kept: int = 0  # comments put back
    dropped: list[str] = field(default_factory=list)  # comments whose key is gone (their text)


def document_data(document: DomainDocument) -> dict[str, Any]:
    """A document as the plain data a YAML file holds, without defaults; a department, role or
    account with nothing to say is ``{}``, never ``null``."""
    data: dict[str, Any] = document.model_dump(mode="json", by_alias=True, exclude_none=True,
                                               exclude_defaults=True)
    for section in ("departments", "roles", "accounts"):
        for name, value in data.get(section, {}).items():
            if value is None:
                data[section][name] = {}
    return data


def render_document(document: DomainDocument, base: str | None = None, *, header: str = "") -> Merged:
    """The YAML text of ``document``, merged with the existing text ``base`` of the same domain
    (see the module documentation); ``header`` is the comment a fresh document (no ``base``)
    starts with."""
    data = document_data(document)
    if base is None:
        return Merged(header + _emit(data, {}))
    old_data, old_positions = load_yaml(base, None)
    if not isinstance(old_data, dict):  # the caller checked it loads as this domain's document
        return Merged(header + _emit(data, {}))
    _keep_descriptions(data, old_data)
    data = _order_like(data, old_data)
    styles = _styles(old_data, old_positions)
    return _with_comments(_emit(data, styles, indentless=_indentless(base, old_data, old_positions)),
                          base, old_data, old_positions)


# -- the data -------------------------------------------------------------------------------


def _keep_descriptions(data: dict[str, Any], old: dict[str, Any]) -> None:
    if isinstance(old.get("description"), str) and old["description"]:
        data["description"] = old["description"]
    for section in ("departments", "roles"):
        before, now = old.get(section), data.get(section)
        if not isinstance(before, dict) or not isinstance(now, dict):
            continue
        for name, value in before.items():
            text = value.get("description") if isinstance(value, dict) else None
            if isinstance(text, str) and text and isinstance(now.get(name), dict):
                now[name] = {**now[name], "description": text}


def _identity(item: Any) -> Any:
    """What a list item is, whatever its position: a name, or a permission set's scope and expiry."""
    if isinstance(item, dict):
        try:
            pset = PermissionSet.model_validate(item)
        except ValueError:
            return ("mapping", repr(sorted(map(repr, item))))
        return ("permissions", str(scope_of(pset.scope)), R.format_expiry(pset.expires))
    if isinstance(item, list):
        return ("list", repr(item))
    return ("value", item if not hasattr(item, "isoformat") else str(item))


def _order_like(new: Any, old: Any) -> Any:
    """``new`` with its keys and items in ``old``'s order (what ``old`` lacks last, as it was)."""
    if isinstance(new, dict) and isinstance(old, dict):
        keys = [k for k in old if k in new] + [k for k in new if k not in old]
        return {k: _order_like(new[k], old[k]) if k in old else new[k] for k in keys}
    if isinstance(new, list) and isinstance(old, list):
        rank: dict[Any, tuple[int, Any]] = {}
        for index, item in enumerate(old):
            rank.setdefault(_identity(item), (index, item))
        placed = sorted(((rank[_identity(item)][0], position) if _identity(item) in rank
                         else (len(old), position), item) for position, item in enumerate(new))
        return [_order_like(item, rank[_identity(item)][1]) if _identity(item) in rank else item
                for _, item in placed]
    return new


def _indentless(text: str, data: Any, positions: Positions) -> bool:
    """Whether the document writes a block list's ``- `` at its key's indentation (the first
    block list of mappings decides)."""
    lines = text.splitlines()
    for path, value in _nodes(data):
        if isinstance(value, list) and value and isinstance(value[0], dict) and path in positions \
                and (*path, 0) in positions:
            line, column = positions[(*path, 0)]
            before = lines[line - 1][:column - 1]
            if line != positions[path][0] and before.rstrip().endswith("-"):
                return before.index("-") + 1 <= positions[path][1]
    return False


def _canonical(data: Any, path: Path) -> tuple[Any, ...] | None:
    """``path`` with each list index replaced by the item's identity (``None``: not in ``data``)."""
    found: list[Any] = []
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            found.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            found.append(_identity(node[part]))
            node = node[part]
        else:
            return None
    return tuple(found)


def _nodes(data: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _nodes(value, (*path, index))


Styles = dict[tuple[Any, ...], tuple[bool, bool]]


def _styles(old: Any, positions: Positions) -> Styles:
    """canonical path → whether the old document wrote that collection on one line (flow), and
    whether it held a mapping then."""
    lines: dict[Path, int] = {path: where[0] for path, where in positions.items()}
    styles: Styles = {}
    for path, value in _nodes(old):
        if not isinstance(value, dict | list) or not value or path not in lines:
            continue
        inside = [lines[p] for p, _ in _nodes(value, path) if p != path and p in lines]
        canonical = _canonical(old, path)
        if canonical is not None and inside:
            styles[canonical] = (all(line == lines[path] for line in inside), _has_mapping(value))
    return styles


# -- the text -------------------------------------------------------------------------------


# Text that YAML reads back as the same text when written plainly, in a block or a flow: no
# punctuation YAML gives a meaning to, and not a word it reads as a number, date or boolean.
_PLAIN = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_.\-/ ]*[A-Za-z0-9_.\-/])?\Z")
_STR = "tag:yaml.org,2002:str"
# PyYAML's implicit typing of plain text, held in a typed name (its stubs leave it unannotated).
_resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve


def _plain(value: object) -> bool:
    return isinstance(value, str) and bool(_PLAIN.match(value)) and \
        _resolve(yaml.ScalarNode, value, (True, False)) == _STR


def _scalar(value: Any, *, flow: bool = False) -> str:
    """One value, quoted when YAML needs it (always on one line)."""
    if _plain(value):
        return str(value)
    text = yaml.safe_dump(value, allow_unicode=True, width=float("inf")).removesuffix("\n...\n").rstrip("\n")
    if "\n" not in text and (not flow or not isinstance(value, str) or text[:1] in "'\""):
        return text
    if "\n" not in text and isinstance(value, str) and text.isprintable():
        return "'" + value.replace("'", "''") + "'"  # plain in a block, not in a flow (`,` `[` …)
    # A line break (or a character only an escape can write): one double-quoted line.
    return yaml.safe_dump(value, allow_unicode=True, width=float("inf"), default_style='"').rstrip("\n")


def _flow(value: Any) -> str:
    """``value`` written on one line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k, flow=True)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value, flow=True)


def _has_mapping(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, dict) or (isinstance(v, list) and _has_mapping(v)) for v in items)


def _emit(data: dict[str, Any], styles: Styles, *, indentless: bool = False) -> str:
    """The YAML text of ``data``: each collection on one line or as a block as ``styles`` (by
    canonical path) says, or by a simple rule where it says nothing; ``indentless``: a list's
    ``- `` at its key's indentation (PyYAML's way), not two spaces in (the sample's)."""
    step = 0 if indentless else 2
    lines: list[str] = []

    def flow_or_none(value: Any, path: Path, depth: int) -> str | None:
        if not isinstance(value, dict | list):
            return _scalar(value)
        if not value:
            return "{}" if isinstance(value, dict) else "[]"
        canonical = _canonical(data, path)
        style = styles.get(canonical) if canonical is not None else None
        if style is None:  # new here: one line when small and flat, as people write them
            in_list = bool(path) and isinstance(path[-1], int)  # a permission set: a block
            wanted = depth >= 2 and not _has_mapping(value) and not (in_list and isinstance(value, dict))
        else:  # as it was; but a one-line mapping that now holds mappings (grants) becomes a block
            wanted = style[0] and (style[1] or not _has_mapping(value))
        if not wanted:
            return None
        text = _flow(value)
        if style is None and len(text) > _FLOW_WIDTH:
            return None
        return text

    def block(value: Any, path: Path, indent: int, first_prefix: str | None = None) -> None:
        # first_prefix: the "- " of a sequence item holding this mapping (its first key follows it)
        if isinstance(value, dict):
            for number, (key, item) in enumerate(value.items()):
                lead = first_prefix if (first_prefix is not None and number == 0) else " " * indent
                inline = flow_or_none(item, (*path, key), len(path) + 1)
                if inline is not None:
                    lines.append(f"{lead}{_scalar(key)}: {inline}")
                else:
                    lines.append(f"{lead}{_scalar(key)}:")
                    block(item, (*path, key), indent + (2 if isinstance(item, dict) else step))
            return
        for index, item in enumerate(value):  # "- " indented under its key, as people write it
            inline = flow_or_none(item, (*path, index), len(path) + 1)
            if inline is not None:
                lines.append(f"{' ' * indent}- {inline}")
            elif isinstance(item, dict):
                block(item, (*path, index), indent + 2, first_prefix=f"{' ' * indent}- ")
            else:  # a list in a list: not in a policy document
                lines.append(f"{' ' * indent}- {_flow(item)}")

    block(data, (), 0)
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Comment:
    text: str  # from its "#"
    line: int  # 1-based
    trailing: bool  # after a value on its line (else on a line of its own)
    column: int = 0  # 0-based column of its "#"
    before: str = ""  # what its line holds before it


def comments_of(text: str) -> list[_Comment]:
    """Every comment of a YAML text, found after the parser's last token on each line (so a ``#``
    inside a quoted value is not one)."""
    ends: dict[int, int] = {}  # 0-based line -> end column of the last token on it
    occupied: set[int] = set()
    for token in yaml.scan(text, Loader=_LOADER):
        start, end = token.start_mark, token.end_mark
        if end.index > start.index:
            occupied.update(range(start.line, end.line + 1))
            ends[end.line] = max(ends.get(end.line, 0), end.column)
    found = []
    for number, line in enumerate(text.splitlines()):
        start = ends.get(number, 0) if number in occupied else 0
        match = _COMMENT.search(line, start)
        if match is not None:
            found.append(_Comment(match.group(1).rstrip(), number + 1,
                                  trailing=bool(line[:match.start(1)].strip()), column=match.start(1),
                                  before=line[:match.start(1)].rstrip()))
    return found


_COMMENT = re.compile(r"(?:^|\s)(#.*)$")


def _with_comments(text: str, base: str, old_data: Any, old_positions: Positions) -> Merged:
    new_data, new_positions = load_yaml(text, None)
    old_lines = _paths_by_line(old_positions)
    new_line_of: dict[tuple[Any, ...], int] = {}
    for path, (line, _) in new_positions.items():
        canonical = _canonical(new_data, path)
        if canonical is not None:
            new_line_of.setdefault(canonical, line)
    key_lines = sorted(line for line, paths in old_lines.items() if paths)
    first, last = (key_lines[0], key_lines[-1]) if key_lines else (1, 1)

    def new_line(path: Path) -> int | None:
        canonical = _canonical(old_data, path)
        return new_line_of.get(canonical) if canonical is not None else None

    above: dict[int, list[str]] = {}
    after: dict[int, list[_Comment]] = {}
    heading: list[str] = []
    footing: list[str] = []
    suppressions: list[tuple[str, list[int]]] = []
    merged = Merged("")
    for comment in comments_of(base):
        if not comment.trailing and comment.line < first:
            heading.append(comment.text)
            merged.kept += 1
            continue
        if not comment.trailing and comment.line > last:
            footing.append(comment.text)
            merged.kept += 1
            continue
        if comment.trailing:
            anchors = old_lines.get(comment.line, [])
            covered = anchors + old_lines.get(comment.line + 1, [])  # its line and the next one
        else:  # a comment line: about the next key (or, if it is gone, the next one beside it)
            anchors = _siblings_after(old_lines, key_lines, comment.line)
            covered = old_lines.get(comment.line + 1, [])
        target = next((line for line in map(new_line, anchors) if line is not None), None)
        if target is None:
            merged.dropped.append(comment.text)
            continue
        merged.kept += 1
        if comment.trailing:
            after.setdefault(target, []).append(comment)
        else:
            above.setdefault(target, []).append(comment.text)
        if _IGNORE.search(comment.text):
            suppressions.append((comment.text, sorted({line for line in map(new_line, covered)
                                                       if line is not None})))
    # Top-level keys that had a blank line (before their comments) keep it: the air of the file.
    air = {new_line_of.get((path[0],)) for path in old_positions if len(path) == 1
           and _blank_above(base.splitlines(), old_positions[path][0])}
    out: list[str] = list(heading)  # (an existing document keeps its own header, or none)
    position: dict[int, int] = {}  # line of the new text -> its index in ``out``
    for number, written in enumerate(text.splitlines(), 1):
        if number in air and out and out[-1].strip():
            out.append("")
        indent = " " * (len(written) - len(written.lstrip(" ")))
        out.extend(indent + c for c in above.get(number, []))
        position[number] = len(out)
        for comment in after.get(number, []):  # at its old column when its line is unchanged
            same = written.rstrip() == comment.before and len(written) + 2 <= comment.column
            written = (written.ljust(comment.column) if same else written + "  ") + comment.text
        out.append(written)
    out.extend(footing)
    for suppression, numbers in suppressions:
        for number in numbers:
            _ensure_suppressed(out, position[number], suppression)
    merged.text = "\n".join(out) + "\n"
    return merged


def _siblings_after(old_lines: dict[int, list[Path]], key_lines: list[int], line: int) -> list[Path]:
    """The key a comment line is about — the next one — then the keys after it in the same
    mapping, in order: where the comment goes if that key is no longer there."""
    following = [number for number in key_lines if number > line]
    first = old_lines[following[0]][0]
    parent = first[:-1]
    found = []
    for number in following:
        path = old_lines[number][0]
        if len(path) < len(first) or path[:len(parent)] != parent:
            break  # out of the mapping
        if len(path) == len(first):
            found.append(path)
    return found


def _blank_above(lines: list[str], line: int) -> bool:
    """Whether a blank line precedes line ``line`` (1-based) and the comment lines just above it."""
    index = line - 2
    while index >= 0 and lines[index].lstrip().startswith("#"):
        index -= 1
    return index >= 0 and not lines[index].strip()


def _paths_by_line(positions: Positions) -> dict[int, list[Path]]:
    found: dict[int, list[tuple[int, int, Path]]] = {}
    for path, (line, column) in positions.items():
        if path:
            found.setdefault(line, []).append((column, len(path), path))
    return {line: [p for _, _, p in sorted(items)] for line, items in found.items()}


def _codes(comment: str) -> set[str] | None:
    """The codes a suppression names (``None``: every code)."""
    match = _IGNORE.search(comment)
    if match is None or match.group(1) is None:
        return None
    return {c.strip() for c in match.group(1).split(",") if c.strip()}


def _ensure_suppressed(out: list[str], index: int, comment: str) -> None:
    """Make line ``index`` of ``out`` silenced for the codes of ``comment``, as the check reads it
    (a suppression on the line itself or the line above)."""
    wanted = _codes(comment)
    for candidate in (index, index - 1):
        if candidate < 0:
            continue
        present = _codes(out[candidate]) if _IGNORE.search(out[candidate]) else set()
        if present is None or (wanted is not None and wanted <= present):
            return
    line = out[index]
    match = _IGNORE.search(line)
    if match is None:
        out[index] = f"{line}  {_suppression(wanted)}"
        return
    present = _codes(line)
    codes = None if wanted is None or present is None else present | wanted
    out[index] = line[:match.start()] + _suppression(codes) + line[match.end():]


def _suppression(codes: set[str] | None) -> str:
    return "# salesauthz: ignore" + (f"[{', '.join(sorted(codes))}]" if codes is not None else "")

"""YAML loading that remembers where every value came from (for line-accurate errors), within
resource limits a hostile file cannot get round.

The document is built straight from the parser's event stream, in one pass, with an explicit
stack: nothing recurses (999 nested ``[`` cannot raise ``RecursionError``), and an alias is
charged for the nodes it would expand to *before* it is expanded, so a few hundred bytes of
"billion laughs" are refused in microseconds instead of being expanded for minutes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from salesauthz._wording import docs_url
from salesauthz.errors import PolicyError, PolicyIssue

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "ParsedYaml",
    "Path",
    "Positions",
    "line_and_column",
    "load_yaml",
    "parse_yaml",
    "position_of",
    "shown",
]

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""Largest policy, test or model file read, in bytes (16 MiB; the benchmarks' generated
organisation of 100,000 rules is 2.6 MB in all). Larger files are refused before being read."""

MAX_DEPTH: Final = 64
"""Deepest nesting of mappings and lists, aliases counted as expanded (a policy document needs
about 8 levels)."""

MAX_NODES: Final = 1_000_000
"""Most values (mappings, lists and scalars) in one file, aliases counted as expanded. Bounds
the memory and time of a file that is small in bytes but dense in values (``[x,x,x,…]``); the
benchmarks' generated organisation of 100,000 rules holds about 140,000 in all."""

MAX_ALIAS_NODES: Final = 100_000
"""Most nodes that aliases (``*name``) may add to one file, each alias counted as the whole
subtree it stands for. Bounds alias bombs; ordinary reuse of a permission list stays far below."""

# libyaml's C parser where PyYAML was built with it (several times faster); same events and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path = tuple[str | int, ...]
Positions = dict[Path, tuple[int, int]]  # path -> (line, column), 1-based

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS: Final = frozenset({f"{_TAG}map", f"{_TAG}seq"})
# Scalar tags and SafeConstructor's functions for them; anything else (``!!python/…``, ``!!set``,
# custom tags) is refused rather than silently read as a plain value.
_SCALAR_CONSTRUCTORS: Final = {
    f"{_TAG}{name}": yaml.SafeLoader.yaml_constructors[f"{_TAG}{name}"]
    for name in ("null", "bool", "int", "float", "timestamp")  # no !!binary: names are text
}
_STR_TAGS: Final = frozenset({f"{_TAG}str", f"{_TAG}value", f"{_TAG}merge"})  # `=`, `<<` as text
# First characters of plain scalars that may be something other than text (`1`, `~`, `yes` …).
_TYPED_FIRST: Final = frozenset(k for k in yaml.resolver.Resolver.yaml_implicit_resolvers if k)

# Characters YAML does not allow in a stream (PyYAML's own test); NUL is the usual one (binary).
_NON_PRINTABLE: Final = yaml.reader.Reader.NON_PRINTABLE
_LINE_BREAK: Final = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a new line


class _Abort(Exception):
    """A resource limit or an unrecoverable structure: stop reading the file now."""


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of character ``offset`` in ``text``, counting lines as YAML does."""
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, offset):
        line, start = line + 1, match.end()
    return line, offset - start + 1


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, shortened for messages (a hostile file may hold a megabyte-long value)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value)):,} characters)"


def load_yaml(text: str, file: str | None, *, progress: Callable[[int], None] | None = None,
              ) -> tuple[Any, Positions]:
    """Parse one YAML document; return the data and the position of every key and item.

    Raises :class:`PolicyError` (with line and column) for invalid YAML, duplicate mapping keys
    (PyYAML would silently keep the last one), merge keys, tags other than the plain YAML types,
    undefined or recursive aliases, several documents in one file, and any resource limit
    (:data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_NODES`, :data:`MAX_ALIAS_NODES`).
    ``progress`` is told, now and then, how many characters have been read.
    """
    parsed = parse_yaml(text, file, progress=progress)
    if parsed.issues:
        raise PolicyError(parsed.issues)
    return parsed.data, parsed.positions


@dataclass(slots=True)
class ParsedYaml:
    """What :func:`parse_yaml` read: the data, where each key and item is, and the problems.

    ``complete`` is false when the reading stopped early (invalid YAML, a resource limit, a
    second document, an undefined alias): ``data`` is then unusable. When it is true, the
    problems found (a duplicate key, a merge key, a refused tag or value …) each cost only the
    part concerned — the second definition of a duplicate key is dropped, a refused value reads
    as nothing and its path is in ``damaged`` — so the rest of the document can still be checked
    in the same run."""

    data: Any
    positions: Positions
    issues: list[PolicyIssue] = field(default_factory=list)
    complete: bool = True
    damaged: frozenset[Path] = frozenset()


def parse_yaml(text: str, file: str | None, *, progress: Callable[[int], None] | None = None,
               ) -> ParsedYaml:
    """:func:`load_yaml` without raising: every problem is in the result (see
    :class:`ParsedYaml`)."""
    if len(text) > MAX_FILE_BYTES:
        return ParsedYaml(None, {}, [limit_issue(
            f"the text is {len(text):,} characters long", "MAX_FILE_BYTES", MAX_FILE_BYTES, file)],
            complete=False)
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line, column = line_and_column(text, bad.start())
        return ParsedYaml(None, {}, [PolicyIssue(
            f"character {_describe(bad.group())} is not allowed in YAML", file, line, column,
            "is this a binary file? policy files are UTF-8 text without control characters",
            "SA101")], complete=False)
    builder = _Builder(file)
    loader = _LOADER(text)
    handlers = builder.handlers()
    complete = True
    try:
        events = 0
        while loader.check_event():
            event = loader.get_event()
            handler = handlers.get(type(event))
            if handler is not None:  # stream and document ends carry nothing
                handler(event)
            if progress is not None:
                events += 1
                if not events & 0xFFF:  # every 4,096 events: a call per event would cost
                    progress(event.start_mark.index)
    except yaml.YAMLError as exc:
        complete = False
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        builder.issues.append(PolicyIssue(
            f"invalid YAML: {problem}", file,
            mark.line + 1 if mark is not None else None,
            mark.column + 1 if mark is not None else None,
            hint="check indentation, colons and quoting around this point", code="SA101",
        ))
    except _Abort:
        complete = False  # the issue that stopped the reading is already in builder.issues
    finally:
        loader.dispose()
    if progress is not None:
        progress(len(text))
    return ParsedYaml(builder.root, dict(builder.entries), builder.issues, complete,
                      frozenset(builder.damaged))


def limit_issue(what: str, name: str, value: int, file: str | None, line: int | None = None,
                column: int | None = None) -> PolicyIssue:
    """The issue for a resource limit: says which limit, and its value."""
    return PolicyIssue(
        f"{what}: over the limit {name} = {value:,}", file, line, column,
        f"salesauthz refuses files beyond its resource limits ({docs_url('policy-reference', 'limits')}); "
        "split the file or remove the repetition", "SA108")


def _describe(character: str) -> str:
    names = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL"}
    code = f"U+{ord(character):04X}"
    return f"{code} ({names[character]})" if character in names else code


def _at(mark: Any) -> tuple[int, int]:
    """1-based (line, column) of a parser mark (0-based)."""
    return mark.line + 1, mark.column + 1


def _tag_text(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Anchor:
    """What an anchor (``&name``) stands for: its value, its size once expanded, and where its
    positions sit in the builder's entry list (copied under each alias that uses it)."""

    __slots__ = ("depth", "entries", "nodes", "prefix", "value")

    def __init__(self, value: Any, nodes: int, depth: int, entries: range, prefix: int) -> None:
        self.value = value
        self.nodes = nodes
        self.depth = depth  # levels of mappings and lists, 0 for a scalar
        self.entries = entries
        self.prefix = prefix  # length of the anchored node's own path


_AWAITING_KEY: Final = object()  # a mapping whose next node is a key
_SKIPPED_KEY: Final = object()  # the key was refused; drop its value


class _Frame:
    """An open mapping or list."""

    __slots__ = ("anchor", "container", "depth", "first_entry", "key", "key_lines", "nodes", "path")

    def __init__(self, container: dict[Any, Any] | list[Any], path: Path | None, anchor: str | None,
                 first_entry: int) -> None:
        self.container = container
        self.path = path  # None inside something refused (a collection used as a key)
        self.anchor = anchor
        self.first_entry = first_entry
        self.nodes = 1
        self.depth = 1
        self.key: Any = _AWAITING_KEY
        self.key_lines: dict[Any, int] = {}


class _Builder:
    """Turns parser events into plain data plus positions, enforcing the limits as it goes."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.issues: list[PolicyIssue] = []
        self.entries: list[tuple[Path, tuple[int, int]]] = []  # becomes Positions
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: set[str] = set()
        self.anchor_lines: dict[str, int] = {}
        self.alias_nodes = 0
        self.nodes = 0
        self.documents = 0
        self.root: Any = None
        self.damaged: list[Path] = []  # values refused (read as nothing): see ParsedYaml

    def _issue(self, message: str, mark: Any, hint: str | None = None, code: str = "SA102") -> None:
        self.issues.append(PolicyIssue(message, self.file, *_at(mark), hint, code))

    def handlers(self) -> dict[type[yaml.Event], Callable[[Any], None]]:
        """What to do with each kind of parser event."""
        return {
            yaml.ScalarEvent: self._scalar,
            yaml.AliasEvent: self._alias,
            yaml.MappingStartEvent: self._start,
            yaml.SequenceStartEvent: self._start,
            yaml.MappingEndEvent: self._end,
            yaml.SequenceEndEvent: self._end,
            yaml.DocumentStartEvent: self._document,
        }

    def _document(self, event: yaml.DocumentStartEvent) -> None:
        self.documents += 1
        if self.documents > 1:
            self._issue("a policy file holds one YAML document; this is a second one",
                        event.start_mark, "remove the `---` line or split the file", "SA101")
            raise _Abort

    def _count(self, nodes: int, mark: Any) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            self.issues.append(limit_issue(f"more than {MAX_NODES:,} values", "MAX_NODES", MAX_NODES,
                                           self.file, *_at(mark)))
            raise _Abort

    # -- where the next node goes ---------------------------------------------------------

    def _next_path(self) -> tuple[Path | None, bool]:
        """The path of the node about to start, and whether it is a mapping key."""
        if not self.stack:
            return (), False
        top = self.stack[-1]
        if top.path is None:
            return None, top.key is _AWAITING_KEY and isinstance(top.container, dict)
        if isinstance(top.container, list):
            return (*top.path, len(top.container)), False
        if top.key is _AWAITING_KEY:
            return None, True
        if top.key is _SKIPPED_KEY:
            return None, False
        return (*top.path, top.key), False

    def _check_depth(self, depth: int, mark: Any) -> None:
        if depth > MAX_DEPTH:
            self.issues.append(limit_issue(f"nesting {depth} levels deep", "MAX_DEPTH", MAX_DEPTH,
                                           self.file, *_at(mark)))
            raise _Abort

    def _record(self, path: Path | None, mark: Any) -> None:
        # A mapping's value takes its key's position (recorded with the key); items their own.
        if path is not None and (not self.stack or isinstance(self.stack[-1].container, list)):
            self.entries.append((path, _at(mark)))

    # -- events ---------------------------------------------------------------------------

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        # The hot path (most events are scalars): _next_path, _record and _attach, inlined.
        mark: Any = event.start_mark
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self._count(0, mark)
        problems = len(self.issues)
        value = self._construct(event)
        if len(self.issues) != problems:
            self._damage()
        if event.anchor is not None:
            self._name_anchor(event.anchor, mark)
            self.anchors[event.anchor] = _Anchor(value, 1, 0, range(0), 0)
        if not self.stack:
            self.entries.append(((), _at(mark)))
            self.root = value
            return
        top = self.stack[-1]
        top.nodes += 1
        container = top.container
        if type(container) is list:
            if top.path is not None:
                self.entries.append(((*top.path, len(container)), (mark.line + 1, mark.column + 1)))
            container.append(value)
        elif top.key is _AWAITING_KEY:
            top.key = self._key(top, value, mark, plain=event.implicit[0])
        else:
            if top.key is not _SKIPPED_KEY:
                container[top.key] = value
            top.key = _AWAITING_KEY

    def _damage(self) -> None:
        """Remember where the value just refused goes (its schema error would repeat it)."""
        path, is_key = self._next_path()
        if path is not None and not is_key:
            self.damaged.append(path)

    def _construct(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            value = event.value
            # Quoted text is text; plain text only if no implicit type starts with its first
            # character (as PyYAML's resolver decides, without its per-scalar cost).
            if not event.implicit[0] or tag == "!" or (value and value[0] not in _TYPED_FIRST):
                return value
            tag = _resolve(yaml.ScalarNode, value, event.implicit)
        if tag in _STR_TAGS:
            return event.value
        constructor = _SCALAR_CONSTRUCTORS.get(tag)
        if constructor is None:
            self._issue(f"unsupported YAML tag {_tag_text(tag)} on {shown(event.value)}", event.start_mark,
                        "policy files hold plain text, numbers, dates, lists and mappings", "SA101")
            return None
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)  # errors use the event's mark
        try:
            return constructor(self._constructor, node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            kind = "date or time" if tag.endswith("timestamp") else "value"
            reason = getattr(exc, "problem", None) or str(exc)
            self._issue(f"invalid {kind} {shown(event.value)}: {reason}", event.start_mark,
                        "dates are ISO-8601, e.g. 2026-12-31 or 2026-12-31T18:00:00Z"
                        if kind != "value" else None)
            return None

    def _alias(self, event: yaml.AliasEvent) -> None:
        name = event.anchor or ""  # an alias always names its anchor
        anchor = self.anchors.get(name)
        if anchor is None:
            if name in self.open_anchors:
                self._issue(f"alias *{name} refers to a node that contains it (a loop)",
                            event.start_mark, "an alias may only repeat a node that is complete",
                            "SA101")
            else:
                self._issue(f"alias *{name} has no anchor &{name} before it", event.start_mark,
                            "define `&name` on a node before using `*name`", "SA101")
            raise _Abort
        self.alias_nodes += anchor.nodes
        self._count(anchor.nodes, event.start_mark)
        if self.alias_nodes > MAX_ALIAS_NODES:
            self.issues.append(limit_issue(
                f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (at *{name}; an alias bomb?)",
                "MAX_ALIAS_NODES", MAX_ALIAS_NODES, self.file, *_at(event.start_mark)))
            raise _Abort
        self._check_depth(len(self.stack) + anchor.depth, event.start_mark)
        path, is_key = self._next_path()
        self._record(path, event.start_mark)
        if path is not None and not is_key:
            # Problems inside the repeated part are reported where it was written (the anchor).
            for entry in self.entries[anchor.entries.start:anchor.entries.stop]:
                self.entries.append(((*path, *entry[0][anchor.prefix:]), entry[1]))
        self._attach(anchor.value, anchor.nodes, anchor.depth, event.start_mark, plain=False)

    def _start(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent) -> None:
        self._count(1, event.start_mark)
        self._check_depth(len(self.stack) + 1, event.start_mark)
        if event.tag not in (None, "!") and event.tag not in _COLLECTION_TAGS:
            self._issue(f"unsupported YAML tag {_tag_text(event.tag)}", event.start_mark,
                        "policy files hold plain text, numbers, dates, lists and mappings", "SA101")
        path, is_key = self._next_path()
        if is_key:
            self._issue("a mapping key must be a plain value", event.start_mark)
        self._record(path, event.start_mark)
        container: dict[Any, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        if event.anchor is not None:
            self._name_anchor(event.anchor, event.start_mark)
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame(container, path, event.anchor, len(self.entries)))

    def _name_anchor(self, name: str, mark: Any) -> None:
        # As PyYAML's composer: one definition per anchor name, so `*name` is never ambiguous.
        line = _at(mark)[0]
        first = self.anchor_lines.setdefault(name, line)
        if first != line or name in self.anchors or name in self.open_anchors:
            self._issue(f"anchor &{name} is defined twice (first on line {first})", mark,
                        "give each anchor its own name", "SA103")

    def _end(self, event: yaml.CollectionEndEvent) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            prefix = len(frame.path) if frame.path is not None else 0
            entries = range(frame.first_entry, len(self.entries)) if frame.path is not None else range(0)
            self.anchors[frame.anchor] = _Anchor(frame.container, frame.nodes, frame.depth, entries,
                                                 prefix)
        self._attach(frame.container, frame.nodes, frame.depth, None, plain=False)

    def _attach(self, value: Any, nodes: int, depth: int, mark: Any, *, plain: bool) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.nodes += nodes
        top.depth = max(top.depth, depth + 1)  # a scalar child (depth 0) leaves it at 1
        if isinstance(top.container, list):
            top.container.append(value)
            return
        if top.key is not _AWAITING_KEY:
            if top.key is not _SKIPPED_KEY:
                top.container[top.key] = value
            top.key = _AWAITING_KEY
            return
        top.key = self._key(top, value, mark, plain=plain)

    def _key(self, top: _Frame, key: Any, mark: Any, *, plain: bool) -> Any:
        if isinstance(key, list | dict):
            if mark is not None:  # a collection key was reported when it started
                self._issue("a mapping key must be a plain value", mark)
            return _SKIPPED_KEY
        if key == "<<" and plain:
            self._issue("YAML merge keys (<<) are not supported", mark,
                        "write the keys out, or repeat a whole value with an alias (*name)")
            return _SKIPPED_KEY
        if key in top.key_lines:
            first = top.key_lines[key]
            self._issue(f"duplicate key {shown(key)} (first defined on line {first})", mark,
                        "each name may appear only once here; merge or rename", "SA103")
            return _SKIPPED_KEY
        top.key_lines[key] = _at(mark)[0]
        if top.path is not None:
            self.entries.append(((*top.path, key), _at(mark)))
        return key

    _constructor: Final = yaml.constructor.SafeConstructor()


# PyYAML's implicit typing of plain scalars (`1` an int, `2026-01-01` a date, `yes` a bool);
# a bound method held in a typed name, as PyYAML's stubs leave it unannotated.
_resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve


def position_of(positions: Positions, path: Path) -> tuple[int | None, int | None]:
    """The position of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        found = positions.get(tuple(path[:end]))
        if found is not None:
            return found
    return None, None

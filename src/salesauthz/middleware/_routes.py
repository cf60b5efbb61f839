"""Route templates (``/customers/{id}``) for the framework-free adapters (plain ASGI, WSGI).

Requirements are declared per route *template*, so ``/customers/7`` and ``/customers/8`` share one
rule and a path can never slip past its rule by an odd spelling of a parameter. ``{name}``
matches one path segment, ``{name:path}`` the rest of the path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["Requirement", "RouteMatch", "RouteTable"]

Requirement = tuple[str, str] | None
"""``(type, action)`` the account must hold on some record of ``type``; ``None``: a public route."""

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class RouteMatch:
    template: str
    params: dict[str, Any]
    requirement: Requirement


class RouteTable:
    """``{"GET /customers/{id}": ("customer", "read"), "/health": None}``; a key without a method
    applies to every method. The first matching entry wins, in the order given."""

    @classmethod
    def for_middleware(cls, rules: Mapping[str, Requirement] | None, unmatched: str,
                       public: Iterable[str]) -> RouteTable:
        """The table of a middleware's ``rules`` and ``public`` routes, after checking its
        ``unmatched`` policy (shared by the ASGI and WSGI middlewares)."""
        if unmatched not in ("deny", "pass"):
            raise ValueError(f"unmatched must be 'deny' or 'pass', not {unmatched!r}")
        return cls({**(rules or {}), **dict.fromkeys(public)})

    def __init__(self, rules: Mapping[str, Requirement]) -> None:
        self._entries: list[tuple[frozenset[str] | None, str, re.Pattern[str], Requirement]] = []
        for key, requirement in rules.items():
            method, _, template = key.strip().partition(" ")
            if not template:
                method, template = "", method
            methods = frozenset(m.upper() for m in method.split(",")) if method else None
            if methods is not None and not methods <= _METHODS:
                raise ValueError(f"route rule {key!r}: unknown HTTP method in {method!r}")
            if not template.startswith("/"):
                raise ValueError(f"route rule {key!r}: the template must start with '/'")
            if requirement is not None and (len(requirement) != 2 or not all(requirement)):
                raise ValueError(f"route rule {key!r}: the requirement must be (type, action) or None")
            self._entries.append((methods, template, _compile(template), requirement))

    def for_template(self, method: str, template: str) -> RouteMatch | None:
        """The entry declared for exactly this route template (a framework matched the path)."""
        for methods, declared, _, requirement in self._entries:
            if declared == template and (methods is None or method in methods
                                         or (method == "HEAD" and "GET" in methods)):
                return RouteMatch(template, {}, requirement)
        return None

    def match(self, method: str, path: str) -> RouteMatch | None:
        for methods, template, pattern, requirement in self._entries:
            found = pattern.match(path)
            if found is None:
                continue
            if methods is not None and method not in methods and not (method == "HEAD" and "GET" in methods):
                continue
            params = {k: unquote(v) for k, v in found.groupdict().items()}
            return RouteMatch(template, params, requirement)
        return None


def _compile(template: str) -> re.Pattern[str]:
    pattern, position = "", 0
    for found in _PARAM.finditer(template):
        pattern += re.escape(template[position:found.start()])
        pattern += f"(?P<{found[1]}>.+)" if found[2] == "path" else f"(?P<{found[1]}>[^/]+)"
        position = found.end()
    pattern += re.escape(template[position:])
    return re.compile(pattern + r"\Z")

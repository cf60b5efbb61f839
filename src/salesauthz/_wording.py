"""How messages are worded, in one place: counts with the right plural, "did you mean",
capped lists and links to the documentation site (messages name pages of the site, never a
path inside the repository, which a user of the installed package does not have)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Final

__all__ = ["DOCS_URL", "capped", "closest", "count", "did_you_mean", "docs_url", "value_kind"]

DOCS_URL: Final = "https://salesauthz.readthedocs.io/"
"""The documentation site (``site_url`` in mkdocs.yml)."""

# Irregular plurals of the nouns messages count; the rest take an "s".
_PLURALS: Final = {"loss": "losses", "policy": "policies", "entry": "entries", "child": "children",
                   "match": "matches"}


def docs_url(page: str, anchor: str | None = None) -> str:
    """The address of a documentation page (``"checker"``) and optional heading anchor."""
    return f"{DOCS_URL}{page.strip('/')}/" + (f"#{anchor}" if anchor else "")


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 error``, ``2 errors``, ``0 losses``, ``1,234 rules``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number:,} {plural or _PLURALS.get(noun, noun + 's')}"


def closest(name: str, candidates: Iterable[str], *, limit: int = 1) -> list[str]:
    """The known names most like ``name`` (a typo, a different case), best first."""
    pool = list(dict.fromkeys(candidates))
    found = difflib.get_close_matches(name, pool, n=limit, cutoff=0.6)
    if not found:  # `Rep_E1A` for `rep_e1a`: case alone is a typo too
        folded = {c.casefold(): c for c in pool}
        hit = folded.get(name.casefold())
        found = [hit] if hit is not None else []
    return [c for c in found if c != name]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """``did you mean 'senior_rep'?`` when a known name is close to ``name``, else ``None``."""
    found = closest(name, candidates)
    return f"did you mean {found[0]!r}?" if found else None


def capped(items: Collection[str] | Iterable[str], limit: int = 3, *, noun: str | None = None) -> str:
    """``a, b, c and 640 more`` (``noun``: ``… and 640 more departments``): a list in a message
    never grows with the size of the organisation."""
    listed = list(items)
    if len(listed) <= limit + 1:  # "and 1 more" would be longer than the item itself
        if len(listed) <= 1:
            return "".join(listed)
        return ", ".join(listed[:-1]) + " and " + listed[-1]
    rest = len(listed) - limit
    more = f"{rest:,} more" + (f" {noun if rest == 1 else _PLURALS.get(noun, noun + 's')}" if noun else "")
    return ", ".join(listed[:limit]) + f" and {more}"


_KINDS: Final[dict[type, str]] = {str: "text", bool: "true/false", int: "a number", float: "a number",
                                  list: "a list", dict: "a mapping", type(None): "nothing"}


def value_kind(value: object) -> str:
    """What a value read from YAML is, in a policy author's words: ``text``, ``a list`` …"""
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    return "a date" if hasattr(value, "isoformat") else f"a {type(value).__name__}"

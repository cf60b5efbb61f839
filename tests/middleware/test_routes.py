"""Route templates for the framework-free adapters."""

from __future__ import annotations

import pytest

from salesauthz.middleware._routes import RouteTable


def test_templates_match_whole_segments() -> None:
    table = RouteTable({
        "GET /customers/{id}": ("customer", "read"),
        "GET,PUT /files/{rest:path}": ("note", "read"),
        "/health": None,
    })
    found = table.match("GET", "/customers/a%20b")
    assert found is not None
    assert (found.template, found.params, found.requirement) == ("/customers/{id}", {"id": "a b"},
                                                                 ("customer", "read"))
    assert table.match("GET", "/customers/7/orders") is None
    assert table.match("GET", "/customers/") is None
    assert table.match("DELETE", "/customers/7") is None
    assert table.match("HEAD", "/customers/7") is not None  # HEAD goes with GET
    assert table.match("PUT", "/files/a/b.txt").params == {"rest": "a/b.txt"}  # type: ignore[union-attr]
    assert table.match("POST", "/health").requirement is None  # type: ignore[union-attr]
    assert table.for_template("HEAD", "/customers/{id}") is not None
    assert table.for_template("POST", "/customers/{id}") is None
    assert table.for_template("GET", "/customers/7") is None


def test_regex_characters_in_templates_are_literal() -> None:
    table = RouteTable({"GET /a.b/{x}": ("customer", "read")})
    assert table.match("GET", "/a.b/1") is not None
    assert table.match("GET", "/aXb/1") is None


@pytest.mark.parametrize(("key", "requirement", "message"), [
    ("FETCH /x", ("customer", "read"), "unknown HTTP method"),
    ("GET x", ("customer", "read"), "must start with '/'"),
    ("GET /x", ("customer",), "requirement must be"),
    ("GET /x", ("customer", ""), "requirement must be"),
])
def test_bad_rules_are_refused(key: str, requirement: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteTable({key: requirement})  # type: ignore[dict-item]

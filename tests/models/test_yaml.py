"""``models/_yaml.py``: the same data as PyYAML's safe loader, a position for every key and item,
and each resource limit enforced exactly at its value."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from salesauthz.errors import PolicyError
from salesauthz.models import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from salesauthz.models._yaml import line_and_column, load_yaml, shown

ROOT = Path(__file__).resolve().parents[2]


def _refusal(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_yaml(text, "f.yaml")
    assert len(caught.value.issues) >= 1
    return str(caught.value.issues[0])


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_same_data_as_pyyaml_on_the_sample(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert load_yaml(text, str(path))[0] == yaml.safe_load(text)


SCALARS = ["1", "-7", "0x1f", "0o17", "1_000", "1.5", ".inf", "-.Inf", ".nan", "1e3", "yes", "No",
           "on", "OFF", "true", "~", "null", "", "2026-01-01", "2026-01-01T10:00:00Z",
           "2026-01-01 10:00:00.5 +02:00", "<<", "'1'", '"yes"', "plain text", "a", "!", "'~'", "0",
           "00", "+1", "1:20", "190:20:30"]


@pytest.mark.parametrize("scalar", SCALARS)
def test_scalars_are_typed_as_pyyaml_types_them(scalar: str) -> None:
    text = f"value: {scalar}\nitems: [{scalar}]\n"
    if scalar in ("<<", "!"):  # `<<` is a merge key only as a key; a lone `!` is a tag
        text = f"value: '{scalar}'\nitems: ['{scalar}']\n"
    ours, theirs = load_yaml(text, "f")[0], yaml.safe_load(text)
    if scalar == ".nan":
        assert repr(ours) == repr(theirs)
    else:
        assert ours == theirs
        assert [type(v) for v in ours.values()] == [type(v) for v in theirs.values()]


def test_a_lone_equals_sign_is_text() -> None:
    # PyYAML's safe loader has no constructor for the `=` "value" type and raises; it is text here.
    assert load_yaml("a: =\n", "f")[0] == {"a": "="}


def test_every_key_and_item_has_its_position() -> None:
    data, positions = load_yaml("a: 1\nb:\n  - x\n  - {c: 2}\n", "f")
    assert data == {"a": 1, "b": ["x", {"c": 2}]}
    assert positions == {(): (1, 1), ("a",): (1, 1), ("b",): (2, 1), ("b", 0): (3, 5),
                         ("b", 1): (4, 5), ("b", 1, "c"): (4, 6)}


def test_an_alias_repeats_the_positions_of_what_it_stands_for() -> None:
    text = "a: &p\n  - read\n  - {x: 1}\nb: *p\nc: [*p]\n"
    data, positions = load_yaml(text, "f")
    assert data == {"a": ["read", {"x": 1}], "b": ["read", {"x": 1}], "c": [["read", {"x": 1}]]}
    # A problem inside the repeated part is reported where it is written: under the anchor.
    assert positions[("b", 1, "x")] == positions[("a", 1, "x")] == (3, 6)
    assert positions[("c", 0, 0)] == (2, 5)
    assert positions[("b",)] == (4, 1)
    assert positions[("c", 0)] == (5, 5)


def test_scalar_anchors_and_alias_keys() -> None:
    data, _ = load_yaml("a: &n bob\nb: {*n : 1}\n", "f")
    assert data == {"a": "bob", "b": {"bob": 1}}


def test_explicit_collection_tags_are_plain_ones() -> None:
    assert load_yaml("a: !!map {b: !!seq [1], c: !!str 2, d: ! 3}\n", "f")[0] == {
        "a": {"b": [1], "c": "2", "d": "3"}}


@pytest.mark.parametrize(("text", "where", "fragment"), [
    ("a: *x\n", "f.yaml:1:4", "alias *x has no anchor &x before it"),
    ("a: &x [*x]\n", "f.yaml:1:8", "alias *x refers to a node that contains it"),
    ("a: &x 1\nb: &x 2\n", "f.yaml:2:4", "anchor &x is defined twice (first on line 1)"),
    ("a: [&x 1, &x 2]\n", "f.yaml:1:11", "anchor &x is defined twice"),
    ("a: &x [&x 1]\n", "f.yaml:1:8", "anchor &x is defined twice"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1", "holds one YAML document"),
    ("a:\n  b: 1\n  b: 2\n", "f.yaml:3:3", "duplicate key 'b' (first defined on line 2)"),
    ("? {a: 1}\n: x\n", "f.yaml:1:3", "a mapping key must be a plain value"),
    ("a: &l [1]\nb: {*l : 2}\n", "f.yaml:2:5", "a mapping key must be a plain value"),
    ("<<: {a: 1}\n", "f.yaml:1:1", "merge keys (<<) are not supported"),
    ("a: !!omap [{b: 1}]\n", "f.yaml:1:4", "unsupported YAML tag !!omap"),
    ("a: !!binary aGk=\n", "f.yaml:1:4", "unsupported YAML tag !!binary"),
    ("a: !!int x\n", "f.yaml:1:4", "invalid value 'x'"),
    ("a: 2026-02-29\n", "f.yaml:1:4", "invalid date or time '2026-02-29': day is out of range"),
    ("a: [1,\n", "f.yaml:2:1", "invalid YAML"),
    ("a: b\x07c\n", "f.yaml:1:5", "character U+0007 is not allowed in YAML"),
    ("a: b\r\nc: \x7f\n", "f.yaml:2:4", "character U+007F (DEL) is not allowed"),
    ("a: b\rc: \x00\n", "f.yaml:2:4", "character U+0000 (NUL)"),
])
def test_located_refusals(text: str, where: str, fragment: str) -> None:
    message = _refusal(text)
    assert message.startswith(where + ":"), message
    assert fragment in message


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(PolicyError) as caught:
        load_yaml("a: 1\na: 2\nb: !!set {x}\n? [k]\n: v\n", "f.yaml")
    assert [(i.line, i.code) for i in caught.value.issues] == [(2, "SA103"), (3, "SA101"), (4, "SA102")]


def test_depth_limit_is_exact() -> None:
    load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f")
    message = _refusal("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert f"nesting {MAX_DEPTH + 1} levels deep: over the limit MAX_DEPTH = {MAX_DEPTH}" in message
    assert message.startswith(f"f.yaml:1:{MAX_DEPTH + 1}:")


def test_depth_counts_what_an_alias_stands_for() -> None:
    deep = "[" * 10 + "]" * 10  # under the document's mapping: 1 + wrappers + 10 levels
    load_yaml(f"a: &d {deep}\nb: " + "[" * (MAX_DEPTH - 11) + "*d" + "]" * (MAX_DEPTH - 11), "f")
    message = _refusal(f"a: &d {deep}\nb: " + "[" * (MAX_DEPTH - 10) + "*d" + "]" * (MAX_DEPTH - 10))
    assert "MAX_DEPTH" in message
    assert message.startswith("f.yaml:2:")


def test_alias_limit_is_exact_and_counts_whole_subtrees() -> None:
    # An anchored list of 999 items is 1,000 values; each alias repeats all of them.
    anchor = "a: &a [" + ",".join(["x"] * 999) + "]\n"
    uses = MAX_ALIAS_NODES // 1000
    load_yaml(anchor + "b: [" + ",".join(["*a"] * uses) + "]\n", "f")
    start = time.process_time()  # CPU time: expanding past the limit would take minutes
    message = _refusal(anchor + "b: [" + ",".join(["*a"] * (uses + 1)) + "]\n")
    assert time.process_time() - start < 5.0
    assert f"over the limit MAX_ALIAS_NODES = {MAX_ALIAS_NODES:,}" in message
    assert message.startswith(f"f.yaml:2:{5 + 3 * uses}:")  # the alias that crossed it


def test_a_billion_laughs_is_refused_in_milliseconds() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for this, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{this}: &{this} [" + ",".join([f"*{previous}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    assert len(text.encode()) < 400
    start = time.process_time()  # CPU time, not a race with the machine's other jobs
    assert "MAX_ALIAS_NODES" in _refusal(text)
    assert time.process_time() - start < 2.0


def test_node_limit() -> None:
    text = "[" + "x," * MAX_NODES + "]"  # the list itself is one more
    message = _refusal(text)
    assert f"more than {MAX_NODES:,} values: over the limit MAX_NODES = {MAX_NODES:,}" in message


def test_text_longer_than_the_file_limit() -> None:
    assert "MAX_FILE_BYTES" in _refusal("#" * (MAX_FILE_BYTES + 1))


def test_line_and_column_count_lines_as_yaml_does() -> None:
    text = "a\r\nb\rc\nd\x85e\u2028f"
    assert [line_and_column(text, text.index(c)) for c in "abcdef"] == [
        (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
    assert line_and_column("abc", 2) == (1, 3)


def test_shown_keeps_messages_short() -> None:
    assert shown("abc") == "'abc'"
    long = shown("x" * 5000)
    assert long.startswith("'xxx")
    assert long.endswith("… (5,000 characters)")
    assert len(long) < 100

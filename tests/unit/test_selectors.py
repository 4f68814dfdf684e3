"""Calico selector language: parsing, evaluation, and precise errors (peers.selectors)."""

from __future__ import annotations

import pytest

from peers.selectors import SelectorError, parse_selector, tokenize

LABELS = {"role": "edge", "rack": "a", "kubernetes.io/hostname": "node-1", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("   ", True),
        ("all()", True),
        ("global()", True),
        ("has(role)", True),
        ("has( role )", True),
        ("has(missing)", False),
        ("!has(missing)", True),
        ("!has(role)", False),
        ("role == 'edge'", True),
        ('role == "edge"', True),
        ("role == 'core'", False),
        ("missing == 'x'", False),
        ("role != 'core'", True),
        ("missing != 'x'", True),
        ("role != 'edge'", False),
        ("rack in {'a', 'b'}", True),
        ("rack in {'b'}", False),
        ("rack in {}", False),
        ("missing in {'a'}", False),
        ("rack not in {'b'}", True),
        ("missing not in {'a'}", True),
        ("rack not in {'a'}", False),
        ("kubernetes.io/hostname == 'node-1'", True),
        ("role == 'edge' && rack == 'a'", True),
        ("role == 'edge' && rack == 'b'", False),
        ("role == 'core' || rack == 'a'", True),
        ("role == 'core' || rack == 'b'", False),
        ("!(role == 'core' || rack == 'b')", True),
        ("role == 'core' || rack == 'a' && has(missing)", False),
        ("(role == 'core' || rack == 'a') && has(role)", True),
        ("!!has(role)", True),
        ("empty == ''", True),
        ("role contains 'dg'", True),
        ("role starts with 'ed'", True),
        ("role ends with 'ge'", True),
        ("role ends with 'ed'", False),
    ],
)
def test_evaluation(selector: str, expected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is expected


def test_and_binds_tighter_than_or() -> None:
    # a || b && c == a || (b && c)
    sel = parse_selector("has(role) || has(x) && has(y)")
    assert sel.matches({"role": "1"})
    assert not parse_selector("(has(role) || has(x)) && has(y)").matches({"role": "1"})


@pytest.mark.parametrize(
    ("selector", "position", "fragment"),
    [
        ("role ==", 7, "expected a quoted string, found end of selector"),
        ("role = 'x'", 5, "unexpected character '='"),
        ("role == 'x", 8, "unterminated string"),
        ("has(role", 0, "has() needs a label and a closing ')'"),
        ("all(", 0, "all() needs a label"),
        ("role == 'a' &&", 14, "expected a label"),
        ("(has(a)", 7, "expected ')'"),
        ("rack in {'a' 'b'}", 13, "expected ',' or '}'"),
        ("rack not {'a'}", 9, "expected 'in' after 'not'"),
        ("rack", 4, "an operator after label 'rack'"),
        ("has(a) has(b)", 7, "expected '&&', '||' or end of selector"),
        ("rack in 'a'", 8, "expected '{'"),
    ],
)
def test_errors_are_precise(selector: str, position: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(selector)
    assert info.value.position == position
    assert fragment in str(info.value)


def test_tokenizer_kinds() -> None:
    kinds = [(t.kind, t.value) for t in tokenize("!has(a) && b in {'x'}")]
    assert kinds == [
        ("op", "!"),
        ("has", "a"),
        ("op", "&&"),
        ("label", "b"),
        ("label", "in"),
        ("op", "{"),
        ("string", "x"),
        ("op", "}"),
        ("end", ""),
    ]


def test_rendering_round_trips() -> None:
    text = "role == 'edge' && !(rack in {'a', 'b'} || has(x))"
    once = str(parse_selector(text))
    assert parse_selector(once) == parse_selector(text)

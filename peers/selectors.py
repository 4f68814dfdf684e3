"""Calico's label selector language: a tokenizer, a recursive-descent parser and an evaluator.

Grammar (libcalico-go ``lib/selector/parser``; calico-bgp.md §1.2.3 ``nodeSelector``)::

    selector := <empty> | or
    or       := and ( "||" and )*
    and      := unary ( "&&" unary )*
    unary    := "!" unary | primary
    primary  := "(" or ")" | "all()" | "global()" | "has(" label ")" | label test
    test     := "==" string | "!=" string | "in" set | "not" "in" set
              | "contains" string | "starts" "with" string | "ends" "with" string
    set      := "{" [ string ( "," string )* ] "}"

Rules:
1. An empty selector selects everything (Calico parses "" as ``all()``).
2. ``k != 'v'`` and ``k not in {...}`` also match when label ``k`` is absent; every other
   test needs the label.
3. Strings are single- or double-quoted, without escapes (as in Calico).
4. A bad selector raises ``SelectorError`` naming the offset and what was expected there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


class SelectorError(ValueError):
    """A selector that does not parse; ``position`` is the offset of the offending text."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        super().__init__(f"bad selector {text!r} at offset {position}: {reason}")
        self.text = text
        self.position = position
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "op", "string", "label", "all", "global", "has", "end"
    value: str
    position: int


_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("all", re.compile(r"all\s*\(\s*\)")),
    ("global", re.compile(r"global\s*\(\s*\)")),
    ("has", re.compile(r"has\s*\(\s*([A-Za-z0-9_./-]+)\s*\)")),
    ("op", re.compile(r"==|!=|&&|\|\||[!(){},]")),
    ("string", re.compile(r"\"([^\"]*)\"|'([^']*)'")),
    ("label", re.compile(r"[A-Za-z0-9_./-]+")),
)
_SPACE = re.compile(r"\s*")
_CALL_START = re.compile(r"(has|all|global)\s*\(")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``end`` token."""
    tokens: list[Token] = []
    pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    while pos < len(text):
        for kind, pattern in _TOKEN_PATTERNS:
            m = pattern.match(text, pos)
            if m is None:
                continue
            if kind == "label" and _CALL_START.match(text, pos):
                raise SelectorError(text, pos, f"{m.group(0)}() needs a label and a closing ')'")
            if kind == "has":
                value = m.group(1)
            elif kind == "string":
                value = m.group(1) if m.group(1) is not None else m.group(2)
            else:
                value = m.group(0)
            tokens.append(Token(kind, value, pos))
            pos = m.end()
            break
        else:
            if text[pos] in "\"'":
                raise SelectorError(text, pos, "unterminated string")
            raise SelectorError(text, pos, f"unexpected character {text[pos]!r}")
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    tokens.append(Token("end", "", len(text)))
    return tokens


class Selector:
    """A parsed selector; ``matches(labels)`` evaluates it against one label map."""

    __slots__ = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class All(Selector):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Has(Selector):
    label: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.label in labels

    def __str__(self) -> str:
        return f"has({self.label})"


@dataclass(frozen=True, slots=True)
class Compare(Selector):
    """``label <op> value`` for ==, !=, contains, starts with, ends with."""

    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label)
        if self.op == "!=":
            return actual != self.value
        if actual is None:
            return False
        if self.op == "==":
            return actual == self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.label} {self.op} '{self.value}'"


@dataclass(frozen=True, slots=True)
class InSet(Selector):
    label: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label)
        found = actual is not None and actual in self.values
        return not found if self.negated else found

    def __str__(self) -> str:
        body = ", ".join(f"'{v}'" for v in sorted(self.values))
        return f"{self.label} {'not in' if self.negated else 'in'} {{{body}}}"


@dataclass(frozen=True, slots=True)
class Not(Selector):
    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class And(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(op) for op in self.operands) + ")"


@dataclass(frozen=True, slots=True)
class Or(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(op) for op in self.operands) + ")"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, expected: str) -> SelectorError:
        token = self.current
        found = "end of selector" if token.kind == "end" else repr(token.value)
        return SelectorError(self.text, token.position, f"expected {expected}, found {found}")

    def accept_op(self, op: str) -> bool:
        if self.current.kind == "op" and self.current.value == op:
            self.index += 1
            return True
        return False

    def accept_word(self, word: str) -> bool:
        if self.current.kind == "label" and self.current.value == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Selector:
        if self.current.kind == "end":
            return All()
        result = self.parse_or()
        if self.current.kind != "end":
            raise self.fail("'&&', '||' or end of selector")
        return result

    def parse_or(self) -> Selector:
        operands = [self.parse_and()]
        while self.accept_op("||"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Selector:
        operands = [self.parse_unary()]
        while self.accept_op("&&"):
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Selector:
        if self.accept_op("!"):
            return Not(self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> Selector:
        token = self.current
        if self.accept_op("("):
            inner = self.parse_or()
            if not self.accept_op(")"):
                raise self.fail("')'")
            return inner
        if token.kind in ("all", "global"):
            self.advance()
            return All()
        if token.kind == "has":
            self.advance()
            return Has(token.value)
        if token.kind == "label":
            self.advance()
            return self.parse_test(token.value)
        raise self.fail("a label, has(), all(), '!' or '('")

    def parse_test(self, label: str) -> Selector:
        for op in ("==", "!="):
            if self.accept_op(op):
                return Compare(label, op, self.parse_string())
        if self.accept_word("in"):
            return InSet(label, self.parse_set())
        if self.accept_word("not"):
            if not self.accept_word("in"):
                raise self.fail("'in' after 'not'")
            return InSet(label, self.parse_set(), negated=True)
        if self.accept_word("contains"):
            return Compare(label, "contains", self.parse_string())
        for word in ("starts", "ends"):
            if self.accept_word(word):
                if not self.accept_word("with"):
                    raise self.fail(f"'with' after '{word}'")
                return Compare(label, f"{word} with", self.parse_string())
        raise self.fail(f"an operator after label {label!r} (==, !=, in, not in, contains, ...)")

    def parse_string(self) -> str:
        if self.current.kind != "string":
            raise self.fail("a quoted string")
        return self.advance().value

    def parse_set(self) -> frozenset[str]:
        if not self.accept_op("{"):
            raise self.fail("'{'")
        values: list[str] = []
        if not self.accept_op("}"):
            values.append(self.parse_string())
            while self.accept_op(","):
                values.append(self.parse_string())
            if not self.accept_op("}"):
                raise self.fail("',' or '}'")
        return frozenset(values)


@lru_cache(maxsize=1024)
def parse_selector(text: str) -> Selector:
    """Parse a Calico selector; raises ``SelectorError`` with the offset of the problem."""
    return _Parser(text).parse()

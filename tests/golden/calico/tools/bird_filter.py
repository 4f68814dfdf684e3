"""A reader and evaluator for the part of BIRD 1.6's configuration language that Calico's confd
templates produce, so the extractor can turn an expected ``bird.cfg`` into facts (sessions and
the verdicts of probe routes) without keeping BIRD's text.

Rules:
1. The configuration is read into top-level items: ``router id``, ``listen bgp``, ``function``
   and ``filter`` bodies, ``protocol``/``template`` blocks (their simple statements, their
   inline ``import filter { }``/``export filter { }`` bodies, and static ``route`` lines).
   ``include "x"`` is replaced by the named file's items when the caller supplies it.
2. Filter bodies are parsed into statements: ``if E then S [else S]``, blocks, ``accept``,
   ``reject``, assignments, calls (functions, ``bgp_community.add``, ``bgp_path.prepend``).
3. Evaluation follows BIRD 1.6's filter semantics: ``accept``/``reject`` end the whole filter
   (also inside a function); reading an undefined attribute is a runtime error, which rejects
   the route; ``net ~ P`` means net lies inside P (equal included), ``ifname ~ "glob"`` matches
   shell patterns, ``bgp_path ~ [= a * =]`` matches a path that starts with ``a``,
   ``(a, b) ~ bgp_community`` tests membership, ``source ~ [ RTS_X ]`` set membership.
   A filter that ends without a verdict rejects (BIRD's default for an unfinished filter).
This is a test tool: it reads only what the goldens contain and fails loudly on anything else.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(
    r"""\s+|\#[^\n]*|"(?P<str>[^"]*)"|'(?P<qid>[^']*)'|(?P<op>!~|!=|<=|>=|&&|\|\||[{}()\[\];,=~<>!+\-*])"""
    r"""|(?P<word>[A-Za-z0-9_.:/]+)"""
)


@dataclass(frozen=True)
class Tok:
    kind: str  # str | id | op | word
    text: str


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read BIRD text at {text[pos : pos + 40]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(Tok("str", m.group("str")))
        elif m.group("qid") is not None:
            out.append(Tok("qid", m.group("qid")))
        elif m.group("op") is not None:
            out.append(Tok("op", m.group("op")))
        elif m.group("word") is not None:
            out.append(Tok("word", m.group("word")))
    return out


class Accept(Exception):
    pass


class Reject(Exception):
    pass


class RuntimeFault(Exception):
    """BIRD's runtime error (e.g. an undefined attribute read): the route is rejected."""


Node = tuple[Any, ...]


class Parser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.kind in ("op", "word") and t.text == text

    def take(self, text: str | None = None) -> Tok:
        t = self.peek()
        if t is None or (text is not None and t.text != text):
            raise ValueError(f"expected {text!r}, got {t!r} at token {self.i}")
        self.i += 1
        return t

    # -- statements ---------------------------------------------------------------------------

    def block(self) -> list[Node]:
        self.take("{")
        body: list[Node] = []
        while not self.at("}"):
            if self.at(";"):
                self.take(";")
                continue
            body.append(self.statement())
        self.take("}")
        return body

    def statement(self) -> Node:
        if self.at("{"):
            return ("block", self.block())
        if self.at("if"):
            self.take("if")
            cond = self.expr()
            self.take("then")
            then = self.statement()
            other: Node | None = None
            if self.at("else"):
                self.take("else")
                other = self.statement()
            return ("if", cond, then, other)
        if self.at("accept") or self.at("reject"):
            word = self.take().text
            self.take(";")
            return (word,)
        t = self.peek()
        nxt = self.peek(1)
        if t is not None and t.kind == "word" and nxt is not None and nxt.text == "=":
            self.i += 2
            value = self.expr()
            self.take(";")
            return ("set", t.text, value)
        value = self.expr()
        self.take(";")
        return ("expr", value)

    # -- expressions --------------------------------------------------------------------------

    def expr(self) -> Node:
        left = self.conj()
        while self.at("||"):
            self.take()
            left = ("or", left, self.conj())
        return left

    def conj(self) -> Node:
        left = self.unary()
        while self.at("&&"):
            self.take()
            left = ("and", left, self.unary())
        return left

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            return ("not", self.unary())
        return self.compare()

    def compare(self) -> Node:
        left = self.additive()
        for op in ("=", "!=", "~", "!~", "<", ">", "<=", ">="):
            if self.at(op):
                self.take()
                return ("cmp", op, left, self.additive())
        return left

    def additive(self) -> Node:
        left = self.primary()
        while self.at("-") or self.at("+"):
            op = self.take().text
            left = ("arith", op, left, self.primary())
        return left

    def primary(self) -> Node:
        t = self.take()
        if t.kind == "str":
            return ("const", t.text)
        if t.text == "(":
            items = [self.expr()]
            while self.at(","):
                self.take()
                items.append(self.expr())
            self.take(")")
            return items[0] if len(items) == 1 else ("tuple", items)
        if t.text == "[":
            return self.set_literal()
        if t.kind == "qid":
            self.take("(")
            return ("call", t.text, self.args())
        if t.kind != "word":
            raise ValueError(f"unexpected {t!r}")
        if t.text == "defined":
            self.take("(")
            name = self.take().text
            self.take(")")
            return ("defined", name)
        if t.text in ("true", "false"):
            return ("const", t.text == "true")
        if re.fullmatch(r"\d+", t.text):
            return ("const", int(t.text))
        if "/" in t.text:
            return ("const", ipaddress.ip_network(t.text, strict=False))
        if "." in t.text and not re.fullmatch(r"[\d.]+", t.text):
            obj, method = t.text.split(".", 1)
            self.take("(")
            args = self.args()
            return ("method", obj, method, args)
        if self.at("("):
            self.take("(")
            return ("call", t.text, self.args())
        return ("var", t.text)

    def args(self) -> list[Node]:
        out: list[Node] = []
        while not self.at(")"):
            out.append(self.expr())
            if self.at(","):
                self.take()
        self.take(")")
        return out

    def set_literal(self) -> Node:
        if self.at("="):  # an AS path mask [= a b * =]
            self.take("=")
            mask: list[int | str] = []
            while not self.at("="):
                w = self.take().text
                mask.append("*" if w == "*" else int(w))
            self.take("=")
            self.take("]")
            return ("pathmask", tuple(mask))
        items: list[str] = []
        while not self.at("]"):
            items.append(self.take().text)
            if self.at(","):
                self.take()
        self.take("]")
        return ("const", frozenset(items))


@dataclass
class Route:
    """A route as a BIRD filter sees it. ``None`` attributes are undefined."""

    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    source: str  # RTS_BGP, RTS_STATIC, RTS_INHERIT (kernel), RTS_DEVICE
    ifname: str | None = None
    krt_metric: int | None = None
    bgp_local_pref: int | None = None
    bgp_next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    bgp_path: tuple[int, ...] | None = None
    bgp_community: list[tuple[int, int]] = field(default_factory=list)
    bgp_large_community: list[tuple[int, int, int]] = field(default_factory=list)
    krt_tunnel: str | None = None
    preference: int | None = None

    def copy(self) -> Route:
        return Route(
            self.net,
            self.source,
            self.ifname,
            self.krt_metric,
            self.bgp_local_pref,
            self.bgp_next_hop,
            self.bgp_path,
            list(self.bgp_community),
            list(self.bgp_large_community),
            self.krt_tunnel,
            self.preference,
        )


ALWAYS_DEFINED = ("net", "source", "preference")


class Evaluator:
    """Runs parsed filter statements on a ``Route`` (rule 3)."""

    def __init__(self, functions: Mapping[str, tuple[list[str], list[Node]]]) -> None:
        self.functions = functions

    def run(self, body: list[Node], route: Route, env: dict[str, Any] | None = None) -> str:
        """``accept`` or ``reject`` (a runtime fault rejects, as in BIRD)."""
        try:
            self.stmts(body, route, env or {})
        except Accept:
            return "accept"
        except (Reject, RuntimeFault):
            return "reject"
        return "reject"

    def stmts(self, body: list[Node], route: Route, env: dict[str, Any]) -> None:
        for st in body:
            self.stmt(st, route, env)

    def stmt(self, st: Node, route: Route, env: dict[str, Any]) -> None:
        kind = st[0]
        if kind == "block":
            self.stmts(st[1], route, env)
        elif kind == "if":
            if self.truth(self.value(st[1], route, env)):
                self.stmt(st[2], route, env)
            elif st[3] is not None:
                self.stmt(st[3], route, env)
        elif kind == "accept":
            raise Accept
        elif kind == "reject":
            raise Reject
        elif kind == "set":
            setattr(route, st[1], self.value(st[2], route, env))
        elif kind == "expr":
            self.value(st[1], route, env)
        else:
            raise ValueError(f"unknown statement {st!r}")

    @staticmethod
    def truth(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"not a boolean: {value!r}")
        return value

    def attr(self, name: str, route: Route, env: dict[str, Any]) -> Any:
        if name in env:
            return env[name]
        if name.startswith("RTS_"):
            return name
        if not hasattr(route, name):
            raise ValueError(f"unknown attribute {name}")
        value = getattr(route, name)
        if value is None and name not in ALWAYS_DEFINED:
            raise RuntimeFault(name)
        return value

    def value(self, node: Node, route: Route, env: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "const":
            return node[1]
        if kind == "var":
            return self.attr(node[1], route, env)
        if kind == "defined":
            return getattr(route, node[1]) is not None
        if kind == "not":
            return not self.truth(self.value(node[1], route, env))
        if kind == "and":
            return self.truth(self.value(node[1], route, env)) and self.truth(
                self.value(node[2], route, env)
            )
        if kind == "or":
            return self.truth(self.value(node[1], route, env)) or self.truth(
                self.value(node[2], route, env)
            )
        if kind == "tuple":
            return tuple(self.value(n, route, env) for n in node[1])
        if kind == "pathmask":
            return node
        if kind == "arith":
            a, b = self.value(node[2], route, env), self.value(node[3], route, env)
            return a - b if node[1] == "-" else a + b
        if kind == "cmp":
            return self.compare(node[1], node[2], node[3], route, env)
        if kind == "call":
            return self.call(node[1], [self.value(a, route, env) for a in node[2]], route)
        if kind == "method":
            args = [self.value(a, route, env) for a in node[3]]
            obj, method = node[1], node[2]
            if method == "add" and obj in ("bgp_community", "bgp_large_community"):
                values = getattr(route, obj)
                if args[0] not in values:
                    values.append(args[0])
                return None
            if obj == "bgp_path" and method == "prepend":
                route.bgp_path = (args[0], *(route.bgp_path or ()))
                return None
            raise ValueError(f"unknown method {obj}.{method}")
        raise ValueError(f"unknown expression {node!r}")

    def compare(self, op: str, ln: Node, rn: Node, route: Route, env: dict[str, Any]) -> bool:
        left = self.value(ln, route, env)
        right = self.value(rn, route, env)
        if op in ("~", "!~"):
            return self.match(left, right) == (op == "~")
        if op == "=":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]

    @staticmethod
    def match(left: Any, right: Any) -> bool:
        if isinstance(right, ipaddress.IPv4Network | ipaddress.IPv6Network):
            if isinstance(left, ipaddress.IPv4Address | ipaddress.IPv6Address):
                return left.version == right.version and left in right
            return left.version == right.version and left.subnet_of(right)
        if isinstance(right, str):
            return fnmatch.fnmatchcase(left, right)
        if isinstance(right, frozenset):
            return left in right
        if isinstance(right, tuple) and right and right[0] == "pathmask":
            mask = right[1]
            head = [a for a in mask if a != "*"]
            if mask[-1] != "*" or "*" in mask[:-1]:
                raise ValueError(f"unsupported path mask {mask}")
            return tuple(left[: len(head)]) == tuple(head)
        if isinstance(right, list):  # (a, b) ~ bgp_community
            return left in right
        raise ValueError(f"cannot match {left!r} ~ {right!r}")

    def call(self, name: str, args: list[Any], route: Route) -> Any:
        params, body = self.functions[name]
        env = dict(zip(params, args, strict=True))
        self.stmts(body, route, env)
        return None


# -- the configuration's items -----------------------------------------------------------------


@dataclass
class Protocol:
    kind: str  # bgp, static, kernel, ...
    name: str
    template: str | None
    is_template: bool
    statements: list[str] = field(default_factory=list)
    import_filter: list[Node] | str | None = None  # a body, or a named filter / all / none
    export_filter: list[Node] | str | None = None


@dataclass
class Config:
    router_id: str | None = None
    listen: list[str] = field(default_factory=list)
    functions: dict[str, tuple[list[str], list[Node]]] = field(default_factory=dict)
    filters: dict[str, list[Node]] = field(default_factory=dict)
    protocols: dict[str, Protocol] = field(default_factory=dict)


def read_config(text: str, include: Callable[[str], str | None]) -> Config:
    config = Config()
    _read_items(Parser(tokenize(text)), config, include)
    return config


def _read_items(p: Parser, config: Config, include: Callable[[str], str | None]) -> None:
    while p.peek() is not None:
        if p.at(";"):
            p.take()
            continue
        word = p.take().text
        if word == "include":
            name = p.take().text
            p.take(";")
            included = include(name)
            if included is not None:
                _read_items(Parser(tokenize(included)), config, include)
        elif word == "router":
            p.take("id")
            config.router_id = p.take().text
            p.take(";")
        elif word == "listen":
            words = []
            while not p.at(";"):
                words.append(p.take().text)
            p.take(";")
            config.listen = words
        elif word == "function":
            name = p.take().text
            p.take("(")
            params: list[str] = []
            while not p.at(")"):
                t = p.take().text
                if t not in ("bool", "int", ","):
                    params.append(t)
            p.take(")")
            config.functions[name] = (params, p.block())
        elif word == "filter":
            name = p.take().text
            config.filters[name] = p.block()
        elif word in ("protocol", "template"):
            _read_protocol(p, config, word == "template")
        else:
            raise ValueError(f"unknown top-level item {word!r}")


def _read_protocol(p: Parser, config: Config, is_template: bool) -> None:
    kind = p.take().text
    name = kind if p.at("{") or p.at("from") else p.take().text
    template = None
    if p.at("from"):
        p.take()
        template = p.take().text
    proto = Protocol(kind, name, template, is_template)
    p.take("{")
    while not p.at("}"):
        if p.at(";"):
            p.take()
            continue
        if (p.at("import") or p.at("export")) and p.peek(1) is not None:
            direction = p.take().text
            if p.at("filter") and p.peek(1) is not None and p.peek(1).text == "{":  # type: ignore[union-attr]
                p.take("filter")
                body: list[Node] | str = p.block()
            elif p.at("filter"):
                p.take("filter")
                body = p.take().text
            else:
                body = p.take().text
            if direction == "import":
                proto.import_filter = body
            else:
                proto.export_filter = body
            continue
        words: list[str] = []
        depth = 0
        while True:
            t = p.take()
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
            elif t.text == ";" and depth == 0:
                break
            words.append(t.text if t.kind != "str" else f'"{t.text}"')
            if depth == 0 and t.text == "}":
                break
        proto.statements.append(" ".join(words))
    p.take("}")
    config.protocols[name] = proto

"""The subset of the IoT Hub query language that fleet views need.

``SELECT * FROM devices [WHERE cond]``, where a condition compares a path
(``deviceId``, ``tags.x``, ``properties.reported.a.b``, ...) with a literal using
``= != <> < <= > >=``, combined with ``AND``, ``OR``, ``NOT`` and parentheses.
As in IoT Hub, a comparison with a missing path is false, whatever the operator.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulators.hub.errors import BadRequest

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[()*])
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$-]*)*)
    )""",
    re.VERBOSE,
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MISSING = object()


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Tok]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise BadRequest(f"query: cannot parse near {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        tokens.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return tokens


Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self._toks = tokens
        self._i = 0

    def _peek(self) -> _Tok | None:
        return self._toks[self._i] if self._i < len(self._toks) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise BadRequest("query: unexpected end")
        self._i += 1
        return tok

    def _keyword(self, word: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "word" and tok.text.upper() == word:
            self._i += 1
            return True
        return False

    def _expect(self, word: str) -> None:
        tok = self._next()
        if tok.text.upper() != word:
            raise BadRequest(f"query: expected {word}, got {tok.text!r}")

    def query(self) -> Predicate:
        self._expect("SELECT")
        self._expect("*")
        self._expect("FROM")
        self._expect("DEVICES")
        predicate: Predicate = lambda _doc: True  # noqa: E731
        if self._keyword("WHERE"):
            predicate = self._or()
        if self._peek() is not None:
            raise BadRequest(f"query: unexpected {self._next().text!r}")
        return predicate

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._keyword("OR"):
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else lambda d: any(t(d) for t in terms)

    def _and(self) -> Predicate:
        terms = [self._not()]
        while self._keyword("AND"):
            terms.append(self._not())
        return terms[0] if len(terms) == 1 else lambda d: all(t(d) for t in terms)

    def _not(self) -> Predicate:
        if self._keyword("NOT"):
            inner = self._not()
            return lambda d: not inner(d)
        tok = self._peek()
        if tok is not None and tok.text == "(":
            self._next()
            inner = self._or()
            if self._next().text != ")":
                raise BadRequest("query: missing ')'")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        path_tok, op_tok, lit_tok = self._next(), self._next(), self._next()
        if path_tok.kind != "word" or op_tok.kind != "op":
            raise BadRequest(f"query: expected 'path op value' at {path_tok.text!r}")
        path, compare, literal = path_tok.text.split("."), _OPS[op_tok.text], _literal(lit_tok)

        def predicate(doc: dict[str, Any]) -> bool:
            value = _lookup(doc, path)
            if value is _MISSING:
                return False
            try:
                return bool(compare(value, literal))
            except TypeError:  # e.g. a string compared with < to a number
                return False

        return predicate


def _literal(tok: _Tok) -> Any:
    if tok.kind == "str":
        body = tok.text[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    if tok.kind == "num":
        return json.loads(tok.text)
    if tok.kind == "word" and tok.text.lower() in ("true", "false", "null"):
        return json.loads(tok.text.lower())
    raise BadRequest(f"query: expected a literal, got {tok.text!r}")


def _lookup(doc: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def compile_query(text: str) -> Predicate:
    """Parse a query once; the result tests one twin's query view."""
    return _Parser(_tokenize(text)).query()

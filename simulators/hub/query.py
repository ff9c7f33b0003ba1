"""The IoT Hub query language over device twins, as its reference page documents it.

``SELECT [TOP n] <list> FROM devices [WHERE cond] [GROUP BY path]`` where the
list is ``*`` or paths and the aggregates ``COUNT()``, ``AVG(path)``,
``SUM(path)``, ``MIN(path)``, ``MAX(path)``, each with an optional ``AS name``;
GROUP BY takes one attribute, as the grammar's ``<group_specification>`` does.
A condition compares a path (``deviceId``, ``tags.x``,
``properties.reported.a.b``, ``configurations.[[id]].status``) with a literal
using ``= != <> < <= > >=``, tests ``path [NOT] IN [...]``, ``path NIN [...]``
or ``IS_DEFINED(path)``, and combines them with ``AND``, ``OR``, ``NOT`` and
parentheses. As in IoT Hub, a comparison with a missing path is false, whatever
the operator, and values of different types never compare equal.

A property whose name is a reserved word of the language must be escaped:
``tags.[[group]]``; bare ``tags.group`` is refused, as IoT Hub refuses it
(source: "IoT Hub query language", learn.microsoft.com,
iot-hub-devguide-query-language; MicrosoftDocs/azure-docs#17106).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from simulators.hub.errors import BadRequest

_SEGMENT = r"(?:[A-Za-z_$][A-Za-z0-9_$-]*|\[\[[^\]]+\]\])"
_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*(?:\.{_SEGMENT})*)
      | (?P<punct>[()*,\[\]])
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
MAX_QUERY_LEN = 8192  # IoT Hub refuses longer query strings
#: Words of the query language that a property name may only use escaped, as [[word]].
RESERVED = frozenset(
    [
        "all",
        "and",
        "as",
        "asc",
        "avg",
        "between",
        "by",
        "count",
        "desc",
        "devices",
        "false",
        "from",
        "group",
        "in",
        "is_defined",
        "max",
        "min",
        "nin",
        "not",
        "null",
        "or",
        "order",
        "select",
        "sum",
        "top",
        "true",
        "where",
    ]
)
_AGGREGATES = ("COUNT", "AVG", "SUM", "MIN", "MAX")
#: Parentheses and NOTs nested deeper than this are refused (400), not parsed: the
#: parser recurses per level. IoT Hub documents no figure; real conditions use a few.
MAX_NESTING = 32


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
Path = tuple[str, ...]


def _split_path(text: str) -> Path:
    parts = re.findall(r"\[\[[^\]]+\]\]|[^.]+", text)
    for part in parts:
        if part.lower() in RESERVED:
            raise BadRequest(
                f"query: {part!r} in {text[:80]!r} is a reserved word; escape it as [[{part}]]"
            )
    return tuple(p[2:-2] if p.startswith("[[") else p for p in parts)


@dataclass(frozen=True)
class SelectItem:
    """One entry of the SELECT list: a path, or an aggregate over it (COUNT() has none)."""

    path: Path | None
    name: str
    aggregate: str | None = None  # COUNT, AVG, SUM, MIN or MAX

    def value(self, docs: list[dict[str, Any]]) -> Any:
        """The aggregate over a group's documents (numbers only, as IoT Hub)."""
        if self.aggregate == "COUNT":
            return len(docs)
        assert self.path is not None
        numbers = [
            v for d in docs
            if isinstance(v := _lookup(d, self.path), int | float) and not isinstance(v, bool)
        ]  # fmt: skip
        if not numbers:
            return None
        match self.aggregate:
            case "AVG":
                return sum(numbers) / len(numbers)
            case "SUM":
                return sum(numbers)
            case "MIN":
                return min(numbers)
            case _:
                return max(numbers)


@dataclass(frozen=True)
class Query:
    """A parsed query; :meth:`run` evaluates it over query views of twins."""

    select: tuple[SelectItem, ...] | None  # None for SELECT *
    where: Predicate
    group_by: tuple[Path, ...]
    top: int | None = None

    @property
    def is_star(self) -> bool:
        return self.select is None

    def matches(self, doc: dict[str, Any]) -> bool:
        return self.where(doc)

    def limit(self, rows: list[Any]) -> list[Any]:
        return rows if self.top is None else rows[: self.top]

    def run(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows for a projection or aggregation query (not for ``SELECT *``)."""
        assert self.select is not None
        matched = (d for d in docs if self.where(d))
        aggregate = self.group_by or any(i.aggregate for i in self.select)
        if not aggregate:
            return self.limit([self._row(self.select, [d]) for d in matched])
        groups: dict[str, list[dict[str, Any]]] = {}
        for doc in matched:
            key = json.dumps([_plain(_lookup(doc, p)) for p in self.group_by], sort_keys=True)
            groups.setdefault(key, []).append(doc)
        if not self.group_by and not groups:
            return [self._row(self.select, [])]
        return self.limit([self._row(self.select, group) for group in groups.values()])

    @staticmethod
    def _row(items: tuple[SelectItem, ...], docs: list[dict[str, Any]]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for item in items:
            if item.aggregate:
                row[item.name] = item.value(docs)
                continue
            assert item.path is not None
            value = _lookup(docs[0], item.path) if docs else _MISSING
            if value is not _MISSING:
                row[item.name] = value
        return row


def _plain(value: Any) -> Any:
    return None if value is _MISSING else value


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self._toks = tokens
        self._i = 0
        self._depth = 0

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

    def _punct(self, text: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "punct" and tok.text == text:
            self._i += 1
            return True
        return False

    def _expect(self, word: str) -> None:
        tok = self._next()
        if tok.text.upper() != word:
            raise BadRequest(f"query: expected {word}, got {tok.text!r}")

    def query(self) -> Query:
        self._expect("SELECT")
        top = self._top() if self._keyword("TOP") else None
        select = None if self._punct("*") else self._select_list()
        self._expect("FROM")
        self._expect("DEVICES")
        where: Predicate = lambda _doc: True  # noqa: E731
        if self._keyword("WHERE"):
            where = self._or()
        group_by: list[Path] = []
        if self._keyword("GROUP"):
            self._expect("BY")
            group_by.append(self._path())
            if self._punct(","):
                raise BadRequest("query: GROUP BY takes one attribute")
        if self._peek() is not None:
            raise BadRequest(f"query: unexpected {self._next().text!r}")
        if group_by and select is None:
            raise BadRequest("query: GROUP BY needs a SELECT list, not *")
        for item in select or ():
            if group_by and not item.aggregate and item.path not in group_by:
                raise BadRequest(
                    f"query: {'.'.join(item.path or ())} is neither grouped nor aggregated"
                )
        return Query(select, where, tuple(group_by), top)

    def _top(self) -> int:
        tok = self._next()
        if tok.kind != "num" or not tok.text.isdigit() or int(tok.text) < 1:
            raise BadRequest(f"query: TOP needs a positive whole number, got {tok.text!r}")
        return int(tok.text)

    def _select_list(self) -> tuple[SelectItem, ...]:
        items: list[SelectItem] = []
        while True:
            n = len(items) + 1
            aggregate = next((a for a in _AGGREGATES if self._keyword(a)), None)
            path: Path | None
            if aggregate == "COUNT":
                if not (self._punct("(") and self._punct(")")):
                    raise BadRequest("query: COUNT takes no argument: COUNT()")
                path, name = None, f"${n}"
            elif aggregate:
                if not self._punct("("):
                    raise BadRequest(f"query: {aggregate} needs (path)")
                path, name = self._path(), f"${n}"
                if not self._punct(")"):
                    raise BadRequest(f"query: missing ')' after {aggregate}(path")
            else:
                path = self._path()
                name = path[-1]
            if self._keyword("AS"):
                alias = self._next()
                if alias.kind != "word" or "." in alias.text:
                    raise BadRequest(f"query: bad alias {alias.text!r}")
                name = alias.text
            items.append(SelectItem(path, name, aggregate))
            if not self._punct(","):
                return tuple(items)

    def _path(self) -> Path:
        tok = self._next()
        if tok.kind != "word" or tok.text.upper() in ("FROM", "WHERE", "GROUP", "AS"):
            raise BadRequest(f"query: expected a property path, got {tok.text!r}")
        return _split_path(tok.text)

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
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise BadRequest(f"query: nested deeper than {MAX_NESTING} levels")
            return self._unary()
        finally:
            self._depth -= 1

    def _unary(self) -> Predicate:
        if self._keyword("NOT"):
            inner = self._not()
            return lambda d: not inner(d)
        if self._punct("("):
            inner = self._or()
            if not self._punct(")"):
                raise BadRequest("query: missing ')'")
            return inner
        if self._keyword("IS_DEFINED"):
            if not self._punct("("):
                raise BadRequest("query: IS_DEFINED needs (path)")
            path = self._path()
            if not self._punct(")"):
                raise BadRequest("query: missing ')' after IS_DEFINED(path")
            return lambda d: _lookup(d, path) is not _MISSING
        return self._comparison()

    def _comparison(self) -> Predicate:
        path_tok = self._next()
        if path_tok.kind != "word":
            raise BadRequest(f"query: expected 'path op value' at {path_tok.text!r}")
        path = _split_path(path_tok.text)
        if self._keyword("NIN"):
            return self._in(path, True)
        negate = self._keyword("NOT")
        if self._keyword("IN"):
            return self._in(path, negate)
        if negate:
            raise BadRequest("query: NOT here must be followed by IN")
        op_tok = self._next()
        if op_tok.kind != "op":
            raise BadRequest(f"query: expected a comparison after {path_tok.text!r}")
        compare, literal = _OPS[op_tok.text], _literal(self._next())

        def predicate(doc: dict[str, Any]) -> bool:
            value = _lookup(doc, path)
            if value is _MISSING or not _same_kind(value, literal):
                return False
            try:
                return bool(compare(value, literal))
            except TypeError:  # e.g. two objects compared with <
                return False

        return predicate

    def _in(self, path: Path, negate: bool) -> Predicate:
        if not self._punct("["):
            raise BadRequest("query: IN needs a list: IN ['a', 'b']")
        values: list[Any] = []
        if not self._punct("]"):
            values.append(_literal(self._next()))
            while self._punct(","):
                values.append(_literal(self._next()))
            if not self._punct("]"):
                raise BadRequest("query: missing ']' after the IN list")

        def predicate(doc: dict[str, Any]) -> bool:
            value = _lookup(doc, path)
            if value is _MISSING:
                return False
            found = any(_same_kind(value, v) and value == v for v in values)
            return found != negate

        return predicate


def _same_kind(a: Any, b: Any) -> bool:
    """IoT Hub compares values of one JSON type only: 1 is not true, '1' is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b) or a is None or b is None


def _literal(tok: _Tok) -> Any:
    if tok.kind == "str":
        body = tok.text[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    if tok.kind == "num":
        return json.loads(tok.text)
    if tok.kind == "word" and tok.text.lower() in ("true", "false", "null"):
        return json.loads(tok.text.lower())
    raise BadRequest(f"query: expected a literal, got {tok.text!r}")


def _lookup(doc: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def parse_query(text: str) -> Query:
    """Parse a whole query once; IoT Hub's syntax errors become :class:`BadRequest`."""
    if len(text) > MAX_QUERY_LEN:
        raise BadRequest(f"query: longer than {MAX_QUERY_LEN} characters")
    return _Parser(_tokenize(text)).query()


def compile_query(text: str) -> Predicate:
    """Parse a query once; the result tests one twin's query view."""
    return parse_query(text).matches


def compile_condition(text: str) -> Predicate:
    """A configuration's ``targetCondition``: a bare WHERE clause; empty matches nothing
    and ``*`` every device ("Automatic device management": "specify * to target all
    devices")."""
    if not text.strip():
        return lambda _doc: False
    if text.strip() == "*":
        return lambda _doc: True
    return parse_query(f"SELECT * FROM devices WHERE {text}").matches

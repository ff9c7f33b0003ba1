"""The query language: projections, COUNT() GROUP BY, IN, IS_DEFINED and configuration paths."""

from __future__ import annotations

from typing import Any

import pytest

from simulators.hub.errors import BadRequest
from simulators.hub.query import compile_condition, parse_query


def _doc(device_id: str, model: str | None, status: str | None, **tags: Any) -> dict[str, Any]:
    fw = {"fwUpdateStatus": status} if status else {}
    reported: dict[str, Any] = {"firmware": fw}
    if model:
        reported["mcu"] = {"model": model}
    return {
        "deviceId": device_id,
        "tags": tags,
        "properties": {"desired": {}, "reported": reported},
        "configurations": {"fw-a-r0": {"status": "Applied"}} if tags.get("ring") else {},
    }


DOCS = [
    _doc("a", "f4", "current", ring="canary", n=1),
    _doc("b", "f4", "error", ring="pilot", n=2),
    _doc("c", "l0", "error", n=3),
    _doc("d", None, None, n=True),
]


def ids(where: str) -> set[str]:
    q = parse_query(f"SELECT * FROM devices WHERE {where}")
    return {d["deviceId"] for d in DOCS if q.matches(d)}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("tags.ring IN ['canary', 'pilot']", {"a", "b"}),
        ("tags.ring NOT IN ['canary']", {"b"}),  # missing path: false either way
        ("IS_DEFINED(properties.reported.mcu)", {"a", "b", "c"}),
        ("NOT IS_DEFINED(properties.reported.mcu.model)", {"d"}),
        ("configurations.[[fw-a-r0]].status = 'Applied'", {"a", "b"}),
        (
            "properties.reported.firmware.fwUpdateStatus = 'error' AND NOT tags.ring = 'pilot'",
            {"c"},
        ),
        ("(tags.n >= 2 AND tags.n < 3) OR deviceId = 'a'", {"a", "b"}),
        ("tags.n = 1", {"a"}),  # true is not 1
        ("tags.n = true", {"d"}),
        ("tags.n = '1'", set()),
    ],
)
def test_conditions(where: str, expected: set[str]) -> None:
    assert ids(where) == expected


def test_group_by_counts_with_aliases() -> None:
    q = parse_query(
        "SELECT properties.reported.firmware.fwUpdateStatus AS status, COUNT() AS n "
        "FROM devices GROUP BY properties.reported.firmware.fwUpdateStatus"
    )
    rows = sorted(q.run(DOCS), key=lambda r: r.get("status", ""))
    assert rows == [
        {"n": 1},  # no status: left out, as IoT Hub leaves undefined out
        {"status": "current", "n": 1},
        {"status": "error", "n": 2},
    ]


def test_documented_grammar_top_nin_avg_and_star_target() -> None:
    assert ids("tags.ring NIN ['canary']") == {"b"}
    q = parse_query("SELECT TOP 2 deviceId FROM devices WHERE tags.n >= 1")
    assert q.run(DOCS) == [{"deviceId": "a"}, {"deviceId": "b"}]
    avg = parse_query("SELECT AVG(tags.n) AS mean, MAX(tags.n) AS top FROM devices")
    assert avg.run(DOCS) == [{"mean": 2.0, "top": 3}]  # true is no number
    assert compile_condition("*")(DOCS[3])


@pytest.mark.parametrize("word", ["group", "GROUP", "select", "top", "order"])
def test_reserved_words_must_be_escaped(word: str) -> None:
    docs = [{"deviceId": "x", "tags": {word: "plant-a"}}]
    with pytest.raises(BadRequest, match="reserved word"):
        parse_query(f"SELECT * FROM devices WHERE tags.{word} = 'plant-a'")
    escaped = parse_query(f"SELECT * FROM devices WHERE tags.[[{word}]] = 'plant-a'")
    assert escaped.matches(docs[0])
    grouped = parse_query(f"SELECT tags.[[{word}]] AS g, COUNT() AS n FROM devices "
                          f"GROUP BY tags.[[{word}]]")  # fmt: skip
    assert grouped.run(docs) == [{"g": "plant-a", "n": 1}]


def test_projection_and_plain_count() -> None:
    q = parse_query("SELECT deviceId, properties.reported.mcu.model FROM devices WHERE tags.n > 1")
    assert q.run(DOCS) == [{"deviceId": "b", "model": "f4"}, {"deviceId": "c", "model": "l0"}]
    assert parse_query("SELECT COUNT() FROM devices WHERE tags.n > 9").run(DOCS) == [{"$1": 0}]


@pytest.mark.parametrize(
    "bad",
    [
        "SELECT * FROM devices GROUP BY tags.x",
        "SELECT tags.x, tags.y, COUNT() FROM devices GROUP BY tags.x, tags.y",
        "SELECT TOP 0 * FROM devices",
        "SELECT TOP x * FROM devices",
        "SELECT tags.y, COUNT() FROM devices GROUP BY tags.x",
        "SELECT COUNT(x) FROM devices",
        "SELECT * FROM devices WHERE tags.x IN 'a'",
        "SELECT * FROM devices WHERE tags.x IN ['a'",
        "SELECT * FROM devices WHERE IS_DEFINED tags.x",
        "SELECT * FROM devices WHERE tags.x NOT = 1",
        "SELECT deviceId AS a.b FROM devices",
        "SELECT * FROM devices WHERE " + "deviceId = 'x' OR " * 600 + "deviceId = 'y'",
        "SELECT * FROM devices WHERE " + "(" * 500 + "deviceId = 'x'" + ")" * 500,
        "SELECT * FROM devices WHERE " + "NOT " * 500 + "deviceId = 'x'",
    ],
)
def test_refused_queries(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_query(bad)


def test_target_conditions() -> None:
    assert not compile_condition("")(DOCS[0])
    assert compile_condition("tags.ring = 'canary'")(DOCS[0])
    with pytest.raises(BadRequest):
        compile_condition("tags.ring = ")

"""Pure logic of the emulator: SAS tokens, twin patches and the query language."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.hub import sas, topics
from simulators.hub.errors import AuthError, BadRequest, PreconditionFailed, TooLarge
from simulators.hub.query import compile_query
from simulators.hub.twins import Twin, check_etag, merge_patch

KEY = sas.new_key()


def test_token_round_trip_and_rejections() -> None:
    token = sas.parse_token(sas.make_token("hub/devices/d1", KEY, 2_000_000_000))
    sas.verify(token, (KEY,), now=1_000_000_000)
    assert sas.resource_matches(token, "hub/devices/d1")
    assert not sas.resource_matches(token, "hub/devices/d2")
    with pytest.raises(AuthError, match="expired"):
        sas.verify(token, (KEY,), now=2_000_000_000)
    with pytest.raises(AuthError, match="signature"):
        sas.verify(token, (sas.new_key(),), now=1_000_000_000)
    assert KEY not in repr(token)
    assert token.signature not in repr(token)


def test_group_key_derivation_matches_the_documented_formula() -> None:
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(base64.b64decode(KEY), b"reg-1", hashlib.sha256).digest()
    ).decode()
    assert sas.derive_device_key(KEY, "reg-1") == expected


@pytest.mark.parametrize(
    "bad", ["Bearer x", "SharedAccessSignature sr=a&se=1", "SharedAccessSignature sr=a&sig=b&se=x"]
)
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(AuthError):
        sas.parse_token(bad)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.dictionaries(st.text("abc", min_size=1, max_size=2), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text("abc", min_size=1, max_size=2), _json, max_size=4))
def test_merge_patch_never_keeps_nulls(patch: dict[str, object]) -> None:
    def has_null(doc: object) -> bool:
        return doc is None or (isinstance(doc, dict) and any(has_null(v) for v in doc.values()))

    assert not has_null(merge_patch({"a": {"b": 1}}, patch))


def test_twin_versions_and_limits() -> None:
    twin = Twin("d").patch_desired({"fw": {"v": "1"}, "$version": 99})
    assert twin.device_view()["desired"] == {"fw": {"v": "1"}, "$version": 2}
    twin = twin.patch_reported({"x": 1}).patch_reported({"x": None})
    assert twin.device_view()["reported"] == {"$version": 3}
    assert twin.version == 4
    with pytest.raises(TooLarge):
        twin.patch_reported({"blob": "x" * 33_000})
    with pytest.raises(BadRequest):
        twin.patch_desired({"a.b": 1})
    check_etag("*", twin.etag)
    check_etag(f'"{twin.etag}"', twin.etag)
    with pytest.raises(PreconditionFailed):
        check_etag("stale", twin.etag)


def _view(device_id: str, status: str | None, tag: str | None = None) -> dict[str, object]:
    twin = Twin(device_id)
    if status:
        twin = twin.patch_reported({"firmware": {"fwUpdateStatus": status}})
    if tag:
        twin = twin.patch_tags({"site": tag})
    return twin.query_view()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM devices", {"a", "b", "c", "d"}),
        (
            "select * from devices where properties.reported.firmware.fwUpdateStatus = 'error'",
            {"a", "c"},
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware.fwUpdateStatus != 'error'",
            {"b"},
        ),
        ("SELECT * FROM devices WHERE deviceId = 'a' OR deviceId = \"d\"", {"a", "d"}),
        (
            "SELECT * FROM devices WHERE tags.site = 'x' AND (deviceId = 'a' OR deviceId = 'b')",
            {"a"},
        ),
        ("SELECT * FROM devices WHERE NOT tags.site = 'x'", {"b"}),
    ],
)
def test_query_subset(query: str, expected: set[str]) -> None:
    views = [
        _view("a", "error", "x"),
        _view("b", "current", "y"),
        _view("c", "error", "x"),
        _view("d", None, "x"),
    ]
    predicate = compile_query(query)
    assert {v["deviceId"] for v in views if predicate(v)} == expected


@pytest.mark.parametrize(
    "bad",
    ["SELECT * FROM modules", "SELECT * FROM devices WHERE", "SELECT * FROM devices WHERE a = = 1"],
)
def test_query_errors(bad: str) -> None:
    with pytest.raises(BadRequest):
        compile_query(bad)


def test_response_topics_parse_the_way_the_sdks_do() -> None:
    # The DPS SDK splits on '$' and needs key=value pairs after the second one.
    topic = topics.dps_response(202, "r1", 0)
    assert topic.split("$")[2] == "rid=r1&retry-after=0"
    assert topics.query_params(topics.twin_response(204, "x y", 5)) == {
        "$rid": "x y",
        "$version": "5",
    }
    parsed = topics.parse("devices/d1/messages/events/a=1&%24.ct=application%2Fjson")
    assert (parsed.kind, parsed.segment, parsed.params["$.ct"]) == (
        topics.TopicKind.TELEMETRY,
        "d1",
        "application/json",
    )

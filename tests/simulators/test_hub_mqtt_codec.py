"""The MQTT codec: round trips, any split of the stream, and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.hub.errors import MalformedPacket
from simulators.hub.mqtt import (
    ConnAck,
    ConnackCode,
    Connect,
    Disconnect,
    MqttDecoder,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
    topic_matches,
)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_pid = st.integers(1, 0xFFFF)


def _publish(topic: str, payload: bytes, qos: int, pid: int, retain: bool, dup: bool) -> Publish:
    return Publish(topic, payload, qos, pid if qos else None, retain, dup)


packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(
        Connect,
        client_id=_text,
        username=st.none() | _text,
        password=st.none() | st.binary(max_size=64),
        clean_session=st.booleans(),
        keepalive=st.integers(0, 0xFFFF),
    ),
    st.builds(ConnAck, st.sampled_from(ConnackCode), st.booleans()),
    st.builds(
        _publish,
        _text,
        st.binary(max_size=300),
        st.integers(0, 1),
        _pid,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(PubAck, _pid),
    st.builds(
        Subscribe, _pid, st.lists(st.tuples(_text, st.integers(0, 1)), min_size=1).map(tuple)
    ),
    st.builds(SubAck, _pid, st.lists(st.sampled_from([0, 1, 0x80]), max_size=5).map(tuple)),
    st.builds(Unsubscribe, _pid, st.lists(_text, min_size=1).map(tuple)),
    st.builds(UnsubAck, _pid),
    st.just(PingReq()),
    st.just(PingResp()),
    st.just(Disconnect()),
)


@given(st.lists(packets, min_size=1, max_size=5), st.data())
def test_round_trip_with_any_split(items: list[Packet], data: st.DataObject) -> None:
    wire = b"".join(encode(p) for p in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    decoder, out, start = MqttDecoder(), [], 0
    for cut in [*cuts, len(wire)]:
        out += decoder.feed(wire[start:cut])
        start = cut
    assert out == items


def test_byte_by_byte_and_large_remaining_length() -> None:
    packet = Publish("devices/d/messages/events/", b"x" * 20000, qos=1, packet_id=7)
    decoder = MqttDecoder()
    out = [p for byte in encode(packet) for p in decoder.feed(bytes([byte]))]
    assert out == [packet]


def test_known_bytes() -> None:
    assert encode(PingReq()) == b"\xc0\x00"
    assert encode(ConnAck(ConnackCode.NOT_AUTHORIZED)) == b"\x20\x02\x00\x05"
    assert MqttDecoder().feed(b"\x40\x02\x00\x09") == [PubAck(9)]


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00",  # packet type 0 is reserved
        b"\x30\x02\x00\x05",  # PUBLISH whose topic length runs past the body
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        b"\x82\x02\x00\x01",  # SUBSCRIBE without topics
        b"\x80\x05\x00\x01\x00\x00\x00",  # SUBSCRIBE with wrong reserved flags
        b"\xc0\x01\x00",  # PINGREQ with a body
        b"\x30\xff\xff\xff\xff\x01",  # remaining length longer than 4 bytes
        b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00",  # protocol level 3
    ],
)
def test_malformed_input_raises(wire: bytes) -> None:
    with pytest.raises(MalformedPacket):
        MqttDecoder().feed(wire)


def test_oversized_packet_is_refused_before_buffering() -> None:
    with pytest.raises(MalformedPacket):
        MqttDecoder(max_packet_size=100).feed(b"\x30\xe8\x07")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1", True),
        ("$iothub/methods/POST/#", "$iothub/methods/POST/reboot/?$rid=a", True),
        ("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/?$version=2", False),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected

"""Every wire vector in ``tests/vectors/frames.json``, fed to the codec in every way.

The JSON file is the contract; these tests read it and never regenerate it.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
import typing
from collections.abc import Iterable
from typing import Any

import pytest
from cobs import cobs

from protocols.errors import FrameError
from protocols.mcugw import packets
from protocols.mcugw.codec import BadFrame, Codec, CodecEvent, PacketReceived
from protocols.mcugw.constants import FRAME_VERSION, MAX_BODY, RESPONSE_BIT, Opcode, Status
from protocols.mcugw.crc import crc32
from protocols.mcugw.framing import MAX_ENCODED, encode_frame
from protocols.mcugw.packets import DataRequest, Message, encode_payload
from tests.vectors.messages import from_json, load_vectors, to_json

VECTORS = load_vectors()
ROUNDTRIP = [v for v in VECTORS if v.get("roundtrip", True)]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def _wire(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])


def _expected(vector: dict[str, Any]) -> PacketReceived:
    return PacketReceived(seq=vector["seq"], message=from_json(vector["decoded"]))


def _decode(chunks: Iterable[bytes], codec: Codec | None = None) -> list[CodecEvent]:
    """Feed chunks as a transport would, draining events after each one."""
    codec = codec or Codec()
    events: list[CodecEvent] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        while (event := codec.next_event()) is not None:
            events.append(event)
    return events


def _random_split(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 8))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------ the file itself


def test_vector_file_covers_the_protocol() -> None:
    names = _ids(VECTORS)
    assert len(names) == len(set(names)), "vector names must be unique"

    requests = {v["decoded"]["message"] for v in VECTORS if v["direction"] == "request"}
    responses = {v["decoded"]["message"] for v in VECTORS if v["direction"] == "response"}
    assert requests == {c.__name__ for c in typing.get_args(packets.Request)}
    assert responses == {c.__name__ for c in typing.get_args(packets.Response)}

    request_ops = {v["opcode"] for v in VECTORS if v["direction"] == "request"}
    response_ops = {v["opcode"] & ~RESPONSE_BIT for v in VECTORS if v["direction"] == "response"}
    assert request_ops == response_ops == {int(op) for op in Opcode}

    acks = {
        v["decoded"]["fields"]["status"] for v in VECTORS if v["decoded"]["message"] == "DataAck"
    }
    assert {"OK", "GAP"} <= acks
    infos = [v for v in VECTORS if v["decoded"]["message"] == "InfoResponse"]
    assert any(len(v["decoded"]["fields"]["slots"]) == 2 for v in infos)
    bodies = [bytes.fromhex(v["body"]) for v in VECTORS]
    assert any(len(b) > 254 and b"\x00" not in b[10:-4] for b in bodies), "COBS 0xFF blocks"
    payloads = [bytes.fromhex(v["payload"]) for v in VECTORS]
    assert any(p.count(0) >= 8 for p in payloads), "payload with 0x00 bytes"
    assert {0x0000, 0x7FFF, 0x8000, 0xFFFF} <= {v["seq"] for v in VECTORS}


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_vector_layers_agree(vector: dict[str, Any]) -> None:
    """Check each record against the spec by hand, not only through the codec."""
    wire, body = _wire(vector), bytes.fromhex(vector["body"])
    assert wire.endswith(b"\x00")
    assert wire.count(0) == 1, "the delimiter is the only 0x00 on the wire"
    assert bytes(cobs.decode(wire[:-1])) == body
    assert len(wire) - 1 <= len(body) + (len(body) + 253) // 254, "COBS overhead bound"
    version, opcode = body[0], body[1]
    seq = int.from_bytes(body[2:4], "little")
    length = int.from_bytes(body[4:6], "little")
    assert (version, opcode, seq) == (FRAME_VERSION, vector["opcode"], vector["seq"])
    assert body[6 : 6 + length].hex() == vector["payload"]
    assert len(body) == 6 + length + 4
    assert int.from_bytes(body[-4:], "little") == crc32(body[:-4])
    assert vector["direction"] == ("response" if opcode & RESPONSE_BIT else "request")


# ------------------------------------------------------------ encoding


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_json_form_is_exact(vector: dict[str, Any]) -> None:
    assert to_json(from_json(vector["decoded"])) == vector["decoded"]


@pytest.mark.parametrize("vector", ROUNDTRIP, ids=_ids(ROUNDTRIP))
def test_encode_gives_exact_hex(vector: dict[str, Any]) -> None:
    message = from_json(vector["decoded"])
    opcode, payload = encode_payload(message)
    assert (opcode, payload.hex()) == (vector["opcode"], vector["payload"])
    assert Codec().encode(message, vector["seq"]).hex() == vector["hex"]


# ------------------------------------------------------------ decoding


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_decode_whole(vector: dict[str, Any]) -> None:
    assert _decode([_wire(vector)]) == [_expected(vector)]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_decode_byte_by_byte(vector: dict[str, Any]) -> None:
    wire = _wire(vector)
    codec = Codec()
    for i in range(len(wire) - 1):
        codec.receive_data(wire[i : i + 1])
        assert codec.next_event() is None, f"event before the delimiter (byte {i})"
    assert _decode([wire[-1:]], codec) == [_expected(vector)]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_decode_split_at_random(vector: dict[str, Any]) -> None:
    wire = _wire(vector)
    for attempt in range(8):
        rng = random.Random(f"{vector['name']}/{attempt}")
        assert _decode(_random_split(wire, rng)) == [_expected(vector)]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
@pytest.mark.parametrize("kind", ["random", "truncated_frame", "delimiter_free_run"])
def test_decode_after_garbage(vector: dict[str, Any], kind: str) -> None:
    """A delimited garbage segment costs one BadFrame; the frame after it is clean."""
    wire = _wire(vector)
    rng = random.Random(f"{vector['name']}/{kind}")
    if kind == "random":
        garbage = bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 64)))
    elif kind == "truncated_frame":  # a frame cut short, e.g. by a reset mid-send
        garbage = wire[: rng.randint(1, len(wire) - 2)]
    else:
        garbage = bytes([0x05]) * 300
    events = _decode([garbage + b"\x00" + wire])
    assert len(events) == 2
    assert isinstance(events[0], BadFrame)
    assert events[1] == _expected(vector)
    split = _decode(_random_split(garbage + b"\x00" + wire, rng))
    assert [type(e) for e in split] == [BadFrame, PacketReceived]
    assert split[1] == events[1]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_every_single_bit_flip_is_rejected(vector: dict[str, Any]) -> None:
    """Flip each bit of the frame (not its delimiter): never a packet, always a BadFrame.

    The intact frame sent afterwards must still decode, so damage never desynchronises.
    """
    wire = _wire(vector)
    expected = _expected(vector)
    for index in range(len(wire) - 1):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[index] ^= 1 << bit
            codec = Codec()
            events = _decode([bytes(damaged)], codec)
            where = f"byte {index} bit {bit}"
            assert events, f"{where}: no event"
            assert all(isinstance(e, BadFrame) for e in events), f"{where}: {events}"
            for event in events:
                assert isinstance(event, BadFrame)
                assert isinstance(event.error, FrameError)
            assert codec.stats.frames_in == 0
            assert codec.stats.crc_errors + codec.stats.frame_errors == len(events)
            assert _decode([wire], codec) == [expected], f"{where}: no resync"


# ------------------------------------------------------------ streams


def _wires(vectors: list[dict[str, Any]]) -> bytes:
    return b"".join(_wire(v) for v in vectors)


def test_back_to_back_frames_in_one_buffer() -> None:
    for first, second in zip(VECTORS, VECTORS[1:] + VECTORS[:1], strict=True):
        events = _decode([_wire(first) + _wire(second)])
        assert events == [_expected(first), _expected(second)]


def test_whole_vector_stream_split_at_random() -> None:
    stream = _wires(VECTORS)
    expected = [_expected(v) for v in VECTORS]
    assert _decode([stream]) == expected
    for attempt in range(5):
        rng = random.Random(f"stream/{attempt}")
        assert _decode(_random_split(stream, rng)) == expected


def test_runs_of_delimiters_are_idle_fill() -> None:
    a, b = VECTORS[0], VECTORS[-1]
    stream = b"\x00" * 7 + _wire(a) + b"\x00" * 3 + _wire(b) + b"\x00" * 20
    assert _decode([stream]) == [_expected(a), _expected(b)]
    assert _decode([bytes([x]) for x in stream]) == [_expected(a), _expected(b)]


def test_lone_delimiter_flushes_partial_garbage() -> None:
    """The client's leading 0x00 ends whatever half-frame the MCU still holds."""
    vector = VECTORS[0]
    codec = Codec()
    assert _decode([b"\x13\x37\x42"], codec) == []
    events = _decode([b"\x00" + _wire(vector)], codec)
    assert len(events) == 2
    assert isinstance(events[0], BadFrame)
    assert events[1] == _expected(vector)


def test_oversize_garbage_run_is_bounded_and_does_not_hide_next_frame() -> None:
    vector = next(v for v in VECTORS if v["name"] == "data_request_long")
    chunk = bytes(range(1, 256)) * 4  # 1020 bytes, no delimiter
    codec = Codec()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for _ in range(2000):  # ~2 MB of garbage, 250 times the largest frame
            codec.receive_data(chunk)
            assert codec.next_event() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - baseline < 4 * MAX_ENCODED, f"decoder grew to {peak - baseline} bytes"
    events = _decode([b"\x00" + _wire(vector)], codec)
    assert len(events) == 2
    assert isinstance(events[0], BadFrame)
    assert events[1] == _expected(vector)


def test_oversize_segment_in_one_buffer_does_not_hide_next_frame() -> None:
    vector = VECTORS[0]
    garbage = b"\x01" * (MAX_ENCODED + 100)
    events = _decode([garbage + b"\x00" + _wire(vector) + garbage + b"\x00" + _wire(vector)])
    assert [type(e) for e in events] == [BadFrame, PacketReceived, BadFrame, PacketReceived]
    assert events[1] == events[3] == _expected(vector)


def test_largest_frame_with_worst_case_cobs_overhead_decodes() -> None:
    """A full 8192-byte body with no zero at all must not trip the oversize guard."""
    data = bytes((i % 255) + 1 for i in range(MAX_BODY - 10 - 4))
    message: Message = DataRequest(offset=0x0101_0101, data=data)
    wire = Codec().encode(message, seq=0x0101)
    assert len(wire) - 1 <= MAX_BODY + (MAX_BODY + 253) // 254
    rng = random.Random("largest")
    assert _decode(_random_split(wire, rng)) == [PacketReceived(0x0101, message)]
    assert _decode([wire[i : i + 7] for i in range(0, len(wire), 7)]) == [
        PacketReceived(0x0101, message)
    ]


def test_payload_beyond_max_body_is_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match="exceeds the frame limit"):
        encode_frame(Opcode.DATA, 0, bytes(MAX_BODY - 10 + 1))


def test_crc_valid_frame_with_unknown_opcode_is_a_bad_frame() -> None:
    wire = encode_frame(0x7F, 5, b"")
    events = _decode([wire])
    assert len(events) == 1
    assert isinstance(events[0], BadFrame)
    assert "opcode" in str(events[0].error)


def test_unknown_status_is_a_bad_frame() -> None:
    wire = encode_frame(Opcode.DATA | RESPONSE_BIT, 5, bytes([0x7F, 0, 0, 0, 0]))
    events = _decode([wire])
    assert len(events) == 1
    assert isinstance(events[0], BadFrame)
    assert max(int(s) for s in Status) < 0x7F

"""The precompiled DATA / DATA-ack layouts agree byte for byte with the construct declarations.

DATA frames skip construct for speed (bench/README.md, "CPU per flashed MB");
these checks pin that shortcut to the declared layout, both ways, for any
field values, including the edge cases that must fall back to the generic path.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import FrameError
from protocols.mcugw import packets
from protocols.mcugw.constants import RESPONSE_BIT, Opcode, Status
from protocols.mcugw.framing import _CRC, _HEADER, decode_body, encode_frame
from protocols.mcugw.packets import DataAck, DataRequest, decode_payload, encode_payload

_DATA_LAYOUT = packets._REQUESTS[Opcode.DATA][1]
_ACK_LAYOUT = packets._RESPONSES[Opcode.DATA][1]
_u32 = st.integers(0, 0xFFFFFFFF)


@given(_u32, st.binary(max_size=1100))
def test_data_request_matches_declared_layout(offset: int, data: bytes) -> None:
    opcode, payload = encode_payload(DataRequest(offset, data))
    assert opcode == Opcode.DATA
    assert payload == _DATA_LAYOUT.build({"offset": offset, "data": data})
    assert decode_payload(opcode, payload) == DataRequest(offset, data)


@given(st.sampled_from(list(Status)), _u32)
def test_data_ack_matches_declared_layout(status: Status, next_offset: int) -> None:
    opcode, payload = encode_payload(DataAck(status, next_offset))
    assert opcode == Opcode.DATA | RESPONSE_BIT
    assert payload == _ACK_LAYOUT.build({"status": int(status), "next_offset": next_offset})
    assert decode_payload(opcode, payload) == DataAck(status, next_offset)


def test_short_or_unknown_data_payloads_take_the_checked_path() -> None:
    # Too short for the fast layout: the generic decoder names the problem.
    for opcode, payload in ((Opcode.DATA, b"\x01\x02"), (Opcode.DATA | RESPONSE_BIT, b"\x00\x01")):
        with pytest.raises(FrameError, match="DATA"):
            decode_payload(opcode, payload)
    # An unknown status byte is refused, as by the generic path.
    with pytest.raises(FrameError, match="status"):
        decode_payload(Opcode.DATA | RESPONSE_BIT, bytes([0x7F, 0, 0, 0, 0]))


@given(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_frame_header_and_crc_round_trip(opcode: int, seq: int, payload: bytes) -> None:
    from cobs import cobs

    body = cobs.decode(encode_frame(opcode, seq, payload)[:-1])
    assert _HEADER.unpack_from(body) == (1, opcode, seq, len(payload))
    assert len(body) == _HEADER.size + len(payload) + _CRC.size
    frame = decode_body(body)
    assert (frame.opcode, frame.seq, frame.payload) == (opcode, seq, payload)

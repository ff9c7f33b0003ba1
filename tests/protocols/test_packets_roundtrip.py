"""Hypothesis round-trips of every packet type: encode, frame, decode."""

from __future__ import annotations

import itertools
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mcugw import packets
from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import (
    MAX_BODY,
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.framing import FRAME_OVERHEAD, encode_frame
from protocols.mcugw.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    ConfirmRequest,
    DataAck,
    DataRequest,
    ErrorResponse,
    Geometry,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Message,
    ResetRequest,
    SetBaudRequest,
    SlotInfo,
    StatusResponse,
    VerifyRequest,
    VerifyResponse,
    decode_payload,
    encode_payload,
)

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
sha256 = st.binary(min_size=32, max_size=32)
#: DATA's data field: whatever fits in the largest frame body beside the offset.
MAX_DATA = MAX_BODY - FRAME_OVERHEAD - 4


def _clip_utf8(text: str) -> str:
    """Cut to at most 255 UTF-8 bytes on a character boundary (the u8 length prefix)."""
    return text.encode()[:255].decode(errors="ignore")


short_text = st.text(st.characters(codec="utf-8"), max_size=300).map(_clip_utf8)
# Flags keep bits they have no name for, so draw any 32-bit pattern.
capabilities = u32.map(Capability)
begin_flags = u32.map(BeginFlags)
# Full-layout and status-only answers exist only for OK; any refusal is ErrorResponse.
STATUS_ONLY_OPCODES = [Opcode.ACTIVATE, Opcode.RESET, Opcode.CONFIRM, Opcode.ABORT, Opcode.SET_BAUD]
LAYOUT_OPCODES = [Opcode.HELLO, Opcode.INFO, Opcode.BEGIN, Opcode.VERIFY]
NOT_OK = st.sampled_from([s for s in Status if s is not Status.OK])

geometry = st.builds(
    Geometry,
    slot_size=u32,
    sector_size=u32,
    write_size=u16,
    page_size=u16,
    erase_us=u32,
    program_us=u32,
    hash_us_per_kib=u32,
    boot_ms=u16,
    max_trial_boots=u8,
)
slot = st.builds(
    SlotInfo,
    state=st.sampled_from(SlotState),
    boot_count=u8,
    size=u32,
    sha256=sha256,
    version=short_text,
)

STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    HelloRequest: st.builds(HelloRequest, min_version=u8, max_version=u8),
    InfoRequest: st.just(InfoRequest()),
    BeginRequest: st.builds(
        BeginRequest, size=u32, sha256=sha256, version=short_text, flags=begin_flags
    ),
    DataRequest: st.builds(
        DataRequest,
        offset=u32,
        data=st.one_of(st.binary(max_size=1100), st.binary(min_size=MAX_DATA, max_size=MAX_DATA)),
    ),
    VerifyRequest: st.just(VerifyRequest()),
    ActivateRequest: st.just(ActivateRequest()),
    ResetRequest: st.builds(ResetRequest, mode=st.sampled_from(ResetMode)),
    ConfirmRequest: st.just(ConfirmRequest()),
    AbortRequest: st.just(AbortRequest()),
    SetBaudRequest: st.builds(SetBaudRequest, baud=u32),
    HelloResponse: st.builds(
        HelloResponse,
        status=st.just(Status.OK),
        protocol_version=u8,
        mode=st.sampled_from(Mode),
        capabilities=capabilities,
        max_data=u16,
        window=u32,
    ),
    InfoResponse: st.builds(
        InfoResponse,
        status=st.just(Status.OK),
        mode=st.sampled_from(Mode),
        running_slot=u8,
        uid=st.binary(max_size=255),
        model=short_text,
        compat=short_text,
        bootloader_version=short_text,
        geometry=geometry,
        slots=st.lists(slot, max_size=4).map(tuple),
    ),
    BeginResponse: st.builds(BeginResponse, status=st.just(Status.OK), slot=u8, resume_offset=u32),
    DataAck: st.builds(DataAck, status=st.sampled_from(Status), next_offset=u32),
    VerifyResponse: st.builds(VerifyResponse, status=st.just(Status.OK), sha256=sha256),
    StatusResponse: st.builds(
        StatusResponse, opcode=st.sampled_from(STATUS_ONLY_OPCODES), status=st.just(Status.OK)
    ),
    ErrorResponse: st.builds(
        ErrorResponse,
        opcode=st.sampled_from(LAYOUT_OPCODES + STATUS_ONLY_OPCODES),
        status=NOT_OK,
    ),
}
KINDS = sorted(STRATEGIES, key=lambda cls: cls.__name__)


def test_every_packet_type_has_a_strategy() -> None:
    every = {*typing.get_args(packets.Request), *typing.get_args(packets.Response)}
    assert set(STRATEGIES) == every


def _decode_one(wire: bytes) -> PacketReceived:
    codec = Codec()
    codec.receive_data(wire)
    event = codec.next_event()
    assert isinstance(event, PacketReceived), event
    assert codec.next_event() is None
    return event


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
@EXAMPLES
@given(data=st.data())
def test_encode_frame_decode_roundtrip(kind: type[Any], data: st.DataObject) -> None:
    message: Message = data.draw(STRATEGIES[kind], label="message")
    seq = data.draw(u16, label="seq")
    wire = Codec().encode(message, seq)
    assert wire.count(0) == 1
    assert wire.endswith(b"\x00")
    assert _decode_one(wire) == PacketReceived(seq=seq, message=message)


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
@EXAMPLES
@given(data=st.data())
def test_split_feeding_roundtrip(kind: type[Any], data: st.DataObject) -> None:
    message: Message = data.draw(STRATEGIES[kind], label="message")
    wire = Codec().encode(message, 7)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=6), label="cuts"))
    bounds = [0, *cuts, len(wire)]
    codec = Codec()
    events = []
    for start, end in itertools.pairwise(bounds):
        codec.receive_data(wire[start:end])
        while (event := codec.next_event()) is not None:
            events.append(event)
    assert events == [PacketReceived(seq=7, message=message)]


# DATA's data runs to the end of the payload, so only it cannot grow new fields.
EXTENSIBLE = [k for k in KINDS if k is not DataRequest]


@pytest.mark.parametrize("kind", EXTENSIBLE, ids=[k.__name__ for k in EXTENSIBLE])
@EXAMPLES
@given(data=st.data())
def test_trailing_payload_bytes_are_ignored(kind: type[Any], data: st.DataObject) -> None:
    """A newer peer may append fields; an older one must still read the known ones."""
    message: Message = data.draw(STRATEGIES[kind], label="message")
    extra = data.draw(st.binary(min_size=1, max_size=64), label="extra")
    opcode, payload = encode_payload(message)
    assert decode_payload(opcode, payload + extra) == message
    if len(payload) + len(extra) <= MAX_BODY - FRAME_OVERHEAD:
        assert _decode_one(encode_frame(opcode, 1, payload + extra)).message == message

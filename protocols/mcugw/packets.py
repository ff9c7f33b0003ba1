"""Packet payloads, declared once with ``construct`` and surfaced as frozen dataclasses.

Requests and responses share an opcode; a response sets :data:`RESPONSE_BIT`.
Every response payload starts with a :class:`Status` byte. A non-OK response to
anything but DATA carries only that byte (decoded as :class:`ErrorResponse`).
Decoders accept trailing bytes so a newer peer may append fields.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from construct import (
    Array,
    Bytes,
    ConstructError,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Optional,
    PascalString,
    Prefixed,
    Struct,
)

from protocols.errors import FrameError
from protocols.mcugw.constants import (
    RESPONSE_BIT,
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)

_Str = PascalString(Int8ul, "utf8")
_Sha = Bytes(32)

# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class HelloRequest:
    OPCODE: ClassVar[Opcode] = Opcode.HELLO
    min_version: int
    max_version: int


@dataclass(frozen=True, slots=True)
class InfoRequest:
    OPCODE: ClassVar[Opcode] = Opcode.INFO


@dataclass(frozen=True, slots=True)
class BeginRequest:
    OPCODE: ClassVar[Opcode] = Opcode.BEGIN
    size: int
    sha256: bytes
    version: str
    flags: BeginFlags = BeginFlags.NONE
    # On the wire only when ``encoding`` is non-zero (§17): the stream DATA carries.
    encoding: int = 0
    stream_size: int = 0
    stream_sha256: bytes = bytes(32)
    base_sha256: bytes = bytes(32)  # DELTA: the image the blocks read; zeros otherwise


@dataclass(frozen=True, slots=True)
class DataRequest:
    OPCODE: ClassVar[Opcode] = Opcode.DATA
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    OPCODE: ClassVar[Opcode] = Opcode.VERIFY


@dataclass(frozen=True, slots=True)
class ActivateRequest:
    OPCODE: ClassVar[Opcode] = Opcode.ACTIVATE


@dataclass(frozen=True, slots=True)
class ResetRequest:
    OPCODE: ClassVar[Opcode] = Opcode.RESET
    mode: ResetMode = ResetMode.RUN


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    OPCODE: ClassVar[Opcode] = Opcode.CONFIRM


@dataclass(frozen=True, slots=True)
class AbortRequest:
    OPCODE: ClassVar[Opcode] = Opcode.ABORT


@dataclass(frozen=True, slots=True)
class SetBaudRequest:
    OPCODE: ClassVar[Opcode] = Opcode.SET_BAUD
    baud: int


Request = (
    HelloRequest
    | InfoRequest
    | BeginRequest
    | DataRequest
    | VerifyRequest
    | ActivateRequest
    | ResetRequest
    | ConfirmRequest
    | AbortRequest
    | SetBaudRequest
)

# ---------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class HelloResponse:
    OPCODE: ClassVar[Opcode] = Opcode.HELLO
    status: Status
    protocol_version: int
    mode: Mode
    capabilities: Capability
    max_data: int  # largest DATA data field, bytes
    window: int  # bytes of DATA the MCU buffers beyond the acknowledged offset


@dataclass(frozen=True, slots=True)
class Geometry:
    slot_size: int  # usable image bytes per slot
    sector_size: int  # erase unit
    write_size: int  # program alignment (DATA offsets are multiples)
    page_size: int  # program unit timed by program_us
    erase_us: int  # time to erase one sector
    program_us: int  # time to program one page
    hash_us_per_kib: int  # VERIFY hashing cost
    boot_ms: int  # reset to first answer
    max_trial_boots: int  # boots allowed unconfirmed before rollback


@dataclass(frozen=True, slots=True)
class SlotInfo:
    state: SlotState
    boot_count: int
    size: int
    sha256: bytes
    version: str


@dataclass(frozen=True, slots=True)
class InfoResponse:
    OPCODE: ClassVar[Opcode] = Opcode.INFO
    status: Status
    mode: Mode
    running_slot: int  # 0xFF: none
    uid: bytes
    model: str
    compat: str  # "manufacturer:model:hwrev"
    bootloader_version: str
    geometry: Geometry
    slots: tuple[SlotInfo, ...]


@dataclass(frozen=True, slots=True)
class BeginResponse:
    OPCODE: ClassVar[Opcode] = Opcode.BEGIN
    status: Status
    slot: int
    resume_offset: int


@dataclass(frozen=True, slots=True)
class DataAck:
    """Cumulative acknowledgement: every byte below ``next_offset`` is in flash.

    ``status`` GAP means a later frame arrived first and ``next_offset`` is missing.
    """

    OPCODE: ClassVar[Opcode] = Opcode.DATA
    status: Status
    next_offset: int


@dataclass(frozen=True, slots=True)
class VerifyResponse:
    OPCODE: ClassVar[Opcode] = Opcode.VERIFY
    status: Status
    sha256: bytes


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """OK answer to ACTIVATE, RESET, CONFIRM, ABORT and SET_BAUD."""

    opcode: Opcode
    status: Status


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Any non-OK answer except to DATA: just the status byte."""

    opcode: Opcode
    status: Status


Response = (
    HelloResponse
    | InfoResponse
    | BeginResponse
    | DataAck
    | VerifyResponse
    | StatusResponse
    | ErrorResponse
)
Message = Request | Response

# ---------------------------------------------------------------- layouts

_GEOMETRY = Struct(
    "slot_size" / Int32ul,
    "sector_size" / Int32ul,
    "write_size" / Int16ul,
    "page_size" / Int16ul,
    "erase_us" / Int32ul,
    "program_us" / Int32ul,
    "hash_us_per_kib" / Int32ul,
    "boot_ms" / Int16ul,
    "max_trial_boots" / Int8ul,
)
_SLOT = Struct(
    "state" / Int8ul,
    "boot_count" / Int8ul,
    "size" / Int32ul,
    "sha256" / _Sha,
    "version" / _Str,
)

_BEGIN_EXT = Struct(
    "encoding" / Int8ul,
    "stream_size" / Int32ul,
    "stream_sha256" / _Sha,
    "base_sha256" / _Sha,
)
_BEGIN_EXT_FIELDS = ("encoding", "stream_size", "stream_sha256", "base_sha256")

_REQUESTS: dict[Opcode, tuple[type[Any], Struct]] = {
    Opcode.HELLO: (HelloRequest, Struct("min_version" / Int8ul, "max_version" / Int8ul)),
    Opcode.INFO: (InfoRequest, Struct()),
    Opcode.BEGIN: (
        BeginRequest,
        Struct(
            "size" / Int32ul,
            "sha256" / _Sha,
            "flags" / Int32ul,
            "version" / _Str,
            # A v1 peer stops after version (its flags, if any, are refused).
            "ext" / Optional(_BEGIN_EXT),
        ),
    ),
    Opcode.DATA: (DataRequest, Struct("offset" / Int32ul, "data" / GreedyBytes)),
    Opcode.VERIFY: (VerifyRequest, Struct()),
    Opcode.ACTIVATE: (ActivateRequest, Struct()),
    Opcode.RESET: (ResetRequest, Struct("mode" / Int8ul)),
    Opcode.CONFIRM: (ConfirmRequest, Struct()),
    Opcode.ABORT: (AbortRequest, Struct()),
    Opcode.SET_BAUD: (SetBaudRequest, Struct("baud" / Int32ul)),
}

_RESPONSES: dict[Opcode, tuple[type[Any], Struct]] = {
    Opcode.HELLO: (
        HelloResponse,
        Struct(
            "status" / Int8ul,
            "protocol_version" / Int8ul,
            "mode" / Int8ul,
            "capabilities" / Int32ul,
            "max_data" / Int16ul,
            "window" / Int32ul,
        ),
    ),
    Opcode.INFO: (
        InfoResponse,
        Struct(
            "status" / Int8ul,
            "mode" / Int8ul,
            "running_slot" / Int8ul,
            "uid" / Prefixed(Int8ul, GreedyBytes),
            "model" / _Str,
            "compat" / _Str,
            "bootloader_version" / _Str,
            "geometry" / _GEOMETRY,
            "slot_count" / Int8ul,
            "slots" / Array(lambda ctx: ctx.slot_count, _SLOT),
        ),
    ),
    Opcode.BEGIN: (
        BeginResponse,
        Struct("status" / Int8ul, "slot" / Int8ul, "resume_offset" / Int32ul),
    ),
    Opcode.DATA: (DataAck, Struct("status" / Int8ul, "next_offset" / Int32ul)),
    Opcode.VERIFY: (VerifyResponse, Struct("status" / Int8ul, "sha256" / _Sha)),
}
_STATUS_ONLY = Struct("status" / Int8ul)

# Fields whose wire integer becomes an enum on the dataclass.
_ENUMS: dict[str, Any] = {
    "status": Status,
    "mode": Mode,
    "capabilities": Capability,
    "flags": BeginFlags,
    "state": SlotState,
}


def _to_wire(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, Geometry):
            value = dataclasses.asdict(value)
        elif field.name == "slots":
            value = [dataclasses.asdict(s) for s in value]
            out["slot_count"] = len(value)
        elif isinstance(value, int):
            value = int(value)  # enums go on the wire as plain integers
        out[field.name] = value
    if isinstance(obj, BeginRequest):
        ext = {k: out.pop(k) for k in _BEGIN_EXT_FIELDS}
        out["ext"] = ext if obj.encoding else None
    return out


def _from_wire(cls: type[Any], parsed: Any, extra: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = dict(extra)
    if cls is BeginRequest:
        ext = parsed.get("ext")
        for k in _BEGIN_EXT_FIELDS:
            if ext is not None:
                kwargs[k] = bytes(ext[k]) if isinstance(ext[k], bytes | bytearray) else ext[k]
    for field in dataclasses.fields(cls):
        if field.name in kwargs or (cls is BeginRequest and field.name in _BEGIN_EXT_FIELDS):
            continue
        value = parsed[field.name]
        if field.name == "geometry":
            value = Geometry(**{f.name: value[f.name] for f in dataclasses.fields(Geometry)})
        elif field.name == "slots":
            value = tuple(
                SlotInfo(
                    state=_enum(SlotState, s.state, "slot state"),
                    boot_count=s.boot_count,
                    size=s.size,
                    sha256=bytes(s.sha256),
                    version=s.version,
                )
                for s in value
            )
        elif cls is ResetRequest and field.name == "mode":
            value = _enum(ResetMode, value, "reset mode")
        elif field.name in _ENUMS:
            value = _enum(_ENUMS[field.name], value, field.name)
        elif isinstance(value, bytes | bytearray):
            value = bytes(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def _enum(kind: Any, value: int, what: str) -> Any:
    if issubclass(kind, Capability | BeginFlags):
        return kind(value)  # flags: unknown bits are kept, never rejected
    try:
        return kind(value)
    except ValueError as exc:
        raise FrameError(f"unknown {what} value {value}") from exc


# DATA and its acknowledgement are about every frame of a transfer; they skip
# the generic construct path for these precompiled layouts (byte-identical,
# checked against the declarations above by tests/protocols/test_packets_fast.py).
_DATA_OFFSET = struct.Struct("<I")
_DATA_ACK = struct.Struct("<BI")
_DATA_RESPONSE = Opcode.DATA | RESPONSE_BIT
_STATUS_OF: dict[int, Status] = {int(s): s for s in Status}


def encode_payload(msg: Message) -> tuple[int, bytes]:
    """Return ``(wire opcode, payload bytes)`` for a message."""
    kind = type(msg)
    try:
        if kind is DataRequest:
            return Opcode.DATA, _DATA_OFFSET.pack(msg.offset) + msg.data  # type: ignore[union-attr]
        if kind is DataAck:
            return _DATA_RESPONSE, _DATA_ACK.pack(msg.status, msg.next_offset)  # type: ignore[union-attr]
    except struct.error:
        pass  # out of range: the generic path raises construct's error for it
    return _encode_generic(msg)


def _encode_generic(msg: Message) -> tuple[int, bytes]:
    # Refuse messages the decoder would read back as something else.
    if isinstance(msg, ErrorResponse):
        if msg.status is Status.OK or msg.opcode is Opcode.DATA:
            raise ValueError(f"ErrorResponse needs a non-OK status and a non-DATA opcode: {msg}")
        return msg.opcode | RESPONSE_BIT, _STATUS_ONLY.build({"status": int(msg.status)})
    if isinstance(msg, StatusResponse):
        if msg.status is not Status.OK or msg.opcode in _RESPONSES:
            raise ValueError(f"StatusResponse is only an OK to a status-only command: {msg}")
        return msg.opcode | RESPONSE_BIT, _STATUS_ONLY.build({"status": int(msg.status)})
    opcode = msg.OPCODE
    is_response = hasattr(msg, "status")
    if is_response and msg.status is not Status.OK and opcode is not Opcode.DATA:  # type: ignore[union-attr]
        raise ValueError(f"non-OK {opcode.name} answers are sent as ErrorResponse")
    table = _RESPONSES if is_response else _REQUESTS
    _, layout = table[opcode]
    payload = layout.build(_to_wire(msg))
    return (opcode | RESPONSE_BIT) if is_response else opcode, bytes(payload)


def decode_payload(wire_opcode: int, payload: bytes) -> Message:
    """Interpret a frame payload; raises :class:`FrameError` if it does not fit."""
    if wire_opcode == Opcode.DATA and len(payload) >= _DATA_OFFSET.size:
        return DataRequest(_DATA_OFFSET.unpack_from(payload)[0], payload[_DATA_OFFSET.size :])
    if wire_opcode == _DATA_RESPONSE and len(payload) >= _DATA_ACK.size:
        code, next_offset = _DATA_ACK.unpack_from(payload)
        status = _STATUS_OF.get(code)
        if status is not None:
            return DataAck(status, next_offset)
    return _decode_generic(wire_opcode, payload)


def _decode_generic(wire_opcode: int, payload: bytes) -> Message:
    is_response = bool(wire_opcode & RESPONSE_BIT)
    try:
        opcode = Opcode(wire_opcode & ~RESPONSE_BIT)
    except ValueError as exc:
        raise FrameError(f"unknown opcode 0x{wire_opcode:02x}") from exc
    try:
        if not is_response:
            cls, layout = _REQUESTS[opcode]
            return _from_wire(cls, layout.parse(payload), {})  # type: ignore[no-any-return]
        status = _enum(Status, _STATUS_ONLY.parse(payload).status, "status")
        if status is not Status.OK and opcode is not Opcode.DATA:
            return ErrorResponse(opcode=opcode, status=status)
        if opcode not in _RESPONSES:
            return StatusResponse(opcode=opcode, status=status)
        cls, layout = _RESPONSES[opcode]
        return _from_wire(cls, layout.parse(payload), {})  # type: ignore[no-any-return]
    except ConstructError as exc:
        kind = "response" if is_response else "request"
        raise FrameError(f"{opcode.name} {kind} payload malformed: {exc}") from exc
    except (TypeError, UnicodeDecodeError) as exc:
        raise FrameError(f"{opcode.name} payload malformed: {exc}") from exc

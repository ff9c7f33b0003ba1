"""Generate ``frames.json``, the protocol's wire test vectors.

Regenerate ONLY on an intentional wire-format change, and review the diff: the
vectors are the contract that firmware written in C is tested against, and the
tests read the committed file, never this script. Run from the repository root::

    .venv/bin/python -m tests.vectors.generate

Each record holds:

``name``       unique identifier
``direction``  ``"request"`` (gateway to MCU) or ``"response"`` (MCU to gateway)
``seq``        sequence number in the header
``opcode``     wire opcode byte (responses have bit 0x80 set)
``payload``    payload bytes, hex
``body``       un-stuffed frame body (header, payload, CRC-32), hex
``hex``        complete wire bytes: COBS-encoded body plus the trailing 0x00
``decoded``    the message, in the JSON form described in ``tests/vectors/messages.py``
``roundtrip``  ``false`` for decode-only records, whose payload carries trailing
               bytes a newer peer might append; encoding ``decoded`` gives a
               shorter frame, decoding ``hex`` still gives ``decoded``
``note``       what the record demonstrates
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cobs import cobs

from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import (
    PROTOCOL_VERSION,
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.framing import encode_frame
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
    encode_payload,
)
from tests.vectors.messages import FRAMES_JSON, to_json

IMAGE_SHA = hashlib.sha256(b"mcu-gateway test image v1.2.0").digest()
OLD_SHA = hashlib.sha256(b"mcu-gateway test image v1.1.0").digest()
BOOTLOADER_CAPS = Capability.WINDOW | Capability.RESUME | Capability.SET_BAUD | Capability.APP_MODE
GEOMETRY = Geometry(
    slot_size=0x3_C000,
    sector_size=4096,
    write_size=8,
    page_size=256,
    erase_us=25_000,
    program_us=700,
    hash_us_per_kib=90,
    boot_ms=150,
    max_trial_boots=3,
)


@dataclass(frozen=True)
class Vector:
    name: str
    seq: int
    message: Message
    note: str
    trailing: bytes = b""  # appended to the payload: decode-only record


def _ff_end_data(seq: int, offset: int) -> bytes:
    """246 non-zero data bytes whose frame has one zero (the length's high byte) and
    ends exactly after a 254-byte COBS block; the filler is varied until the CRC
    has no zero byte."""
    for filler in range(1, 256):
        data = bytes([filler]) * 246
        _, payload = encode_payload(DataRequest(offset=offset, data=data))
        body = encode_frame(Opcode.DATA, seq, payload)
        if cobs.decode(body[:-1]).count(0) == 1:
            return data
    raise AssertionError("no filler gives a zero-free CRC")


def _vectors() -> list[Vector]:
    nonzero = bytes((i % 255) + 1 for i in range(600))  # no 0x00: COBS adds code bytes
    with_zeros = bytes([0x00, 0x00, 0x01, 0x00, 0xFF, 0x00, 0x00, 0x00]) + bytes(8)
    return [
        # ------------------------------------------------------------ requests
        Vector("hello_request", 1, HelloRequest(1, PROTOCOL_VERSION), "client speaks 1..1"),
        Vector("hello_request_range", 2, HelloRequest(1, 3), "client speaks 1..3"),
        Vector("hello_request_seq_7fff", 0x7FFF, HelloRequest(1, 1), "seq high bit clear"),
        Vector("hello_request_seq_8000", 0x8000, HelloRequest(1, 1), "seq high bit set"),
        Vector("hello_request_seq_ffff", 0xFFFF, HelloRequest(1, 1), "last seq before wrap"),
        Vector("hello_request_seq_0000", 0x0000, HelloRequest(1, 1), "seq after wrap"),
        Vector("info_request", 3, InfoRequest(), "empty payload"),
        Vector(
            "begin_request",
            4,
            BeginRequest(size=0x0001_2345, sha256=IMAGE_SHA, version="1.2.0"),
            "flags NONE; wire order is size, sha256, flags, version",
        ),
        Vector(
            "begin_request_flags",
            5,
            BeginRequest(
                size=1024,
                sha256=bytes(32),
                version="",
                flags=BeginFlags.COMPRESSED | BeginFlags.DELTA,
            ),
            "flags without the encoding tail (refused UNSUPPORTED or MALFORMED), empty version, "
            "zero sha256",
        ),
        Vector(
            "begin_request_compressed",
            5,
            BeginRequest(
                size=0x0002_1556,
                sha256=IMAGE_SHA,
                version="2.0.0",
                flags=BeginFlags.COMPRESSED,
                encoding=1,
                stream_size=0x0001_3279,
                stream_sha256=bytes(range(32)),
            ),
            "encoded transfer (§17): size and sha256 are the decoded image's; the tail "
            "names the block stream DATA carries (base_sha256 zeros: not a delta)",
        ),
        Vector(
            "begin_request_delta",
            5,
            BeginRequest(
                size=0x0002_1556,
                sha256=IMAGE_SHA,
                version="2.0.1",
                flags=BeginFlags.COMPRESSED | BeginFlags.DELTA,
                encoding=1,
                stream_size=0x0000_1181,
                stream_sha256=bytes(range(32, 64)),
                base_sha256=bytes(range(64, 96)),
            ),
            "delta (§17): blocks may read the fallback slot, whose image must hash to "
            "base_sha256 (else DELTA_BASE_MISMATCH before anything is written)",
        ),
        Vector(
            "begin_request_utf8_version",
            6,
            BeginRequest(size=200_000, sha256=IMAGE_SHA, version="2.0.0-β+build.7"),
            "version string with multi-byte UTF-8; its length prefix counts bytes",
        ),
        Vector(
            "data_request_small",
            7,
            DataRequest(offset=0, data=bytes(range(1, 17))),
            "first chunk, 16 bytes",
        ),
        Vector(
            "data_request_zero_bytes",
            8,
            DataRequest(offset=0x100, data=with_zeros),
            "payload full of 0x00 bytes (COBS removes them all)",
        ),
        Vector(
            "data_request_long",
            9,
            DataRequest(offset=0x0001_0000, data=nonzero),
            "614-byte body, no zeros in the data: COBS inserts extra 0xFF code blocks",
        ),
        Vector(
            "data_request_cobs_ff_end",
            0x0101,
            DataRequest(offset=0x0101_0108, data=_ff_end_data(0x0101, 0x0101_0108)),
            "body ends exactly after a 0xFF COBS block: no final 0x01 code (§3.1)",
        ),
        Vector(
            "data_request_short_last",
            10,
            DataRequest(offset=0x0001_2340, data=b"\x12\x34\x56\x78\x9a"),
            "last chunk, shorter than write_size; the MCU pads with 0xFF",
        ),
        Vector("verify_request", 11, VerifyRequest(), "empty payload"),
        Vector("activate_request", 12, ActivateRequest(), "empty payload"),
        Vector("reset_request_run", 13, ResetRequest(ResetMode.RUN), "reboot into the app"),
        Vector("reset_request_stay", 14, ResetRequest(ResetMode.STAY), "reboot into bootloader"),
        Vector("confirm_request", 15, ConfirmRequest(), "empty payload"),
        Vector("abort_request", 16, AbortRequest(), "empty payload"),
        Vector("set_baud_request", 17, SetBaudRequest(921_600), "switch to 921600 baud"),
        # ----------------------------------------------------------- responses
        Vector(
            "hello_response_bootloader",
            1,
            HelloResponse(
                status=Status.OK,
                protocol_version=1,
                mode=Mode.BOOTLOADER,
                capabilities=BOOTLOADER_CAPS,
                max_data=1024,
                window=4096,
            ),
            "bootloader running",
        ),
        Vector(
            "hello_response_app",
            1,
            HelloResponse(
                status=Status.OK,
                protocol_version=1,
                mode=Mode.APP,
                capabilities=Capability.APP_MODE,
                max_data=0,
                window=0,
            ),
            "application running: only HELLO, INFO, RESET, CONFIRM work",
        ),
        Vector(
            "hello_response_decoders",
            1,
            HelloResponse(
                status=Status.OK,
                protocol_version=1,
                mode=Mode.BOOTLOADER,
                capabilities=BOOTLOADER_CAPS
                | Capability.COMPRESS
                | Capability.DELTA
                | Capability.THUMB,
                max_data=1024,
                window=8192,
            ),
            "a bootloader with the §17 decoders: COMPRESS, DELTA and THUMB (codec 3)",
        ),
        Vector(
            "hello_response_unknown_capability",
            2,
            HelloResponse(
                status=Status.OK,
                protocol_version=1,
                mode=Mode.BOOTLOADER,
                capabilities=Capability.WINDOW | Capability(0x8000_0000),
                max_data=512,
                window=2048,
            ),
            "capability bit 31 has no name; a peer ignores bits it does not know",
        ),
        Vector(
            "hello_response_trailing_bytes",
            2,
            HelloResponse(
                status=Status.OK,
                protocol_version=2,
                mode=Mode.BOOTLOADER,
                capabilities=BOOTLOADER_CAPS,
                max_data=1024,
                window=4096,
            ),
            "a newer MCU appended 4 bytes; the frozen HELLO layout still decodes",
            trailing=b"\xde\xad\xbe\xef",
        ),
        Vector(
            "info_response_two_slots",
            3,
            InfoResponse(
                status=Status.OK,
                mode=Mode.BOOTLOADER,
                running_slot=0xFF,
                uid=bytes.fromhex("0123456789abcdef0011"),
                model="sensor-x1",
                compat="acme:sensor-x1:rev-b",
                bootloader_version="1.0.3",
                geometry=GEOMETRY,
                slots=(
                    SlotInfo(SlotState.CONFIRMED, 0, 0x0001_1000, OLD_SHA, "1.1.0"),
                    SlotInfo(SlotState.WRITING, 0, 0x0001_2345, IMAGE_SHA, "1.2.0"),
                ),
            ),
            "bootloader mode (running_slot 0xFF): slot 0 confirmed, slot 1 mid-transfer",
        ),
        Vector(
            "info_response_trial",
            3,
            InfoResponse(
                status=Status.OK,
                mode=Mode.APP,
                running_slot=1,
                uid=bytes.fromhex("0123456789abcdef0011"),
                model="sensor-x1",
                compat="acme:sensor-x1:rev-b",
                bootloader_version="1.0.3",
                geometry=GEOMETRY,
                slots=(
                    SlotInfo(SlotState.CONFIRMED, 0, 0x0001_1000, OLD_SHA, "1.1.0"),
                    SlotInfo(SlotState.TRIAL, 1, 0x0001_2345, IMAGE_SHA, "1.2.0"),
                ),
            ),
            "app answering from slot 1 on its first trial boot, not yet confirmed",
        ),
        Vector(
            "info_response_blank",
            3,
            InfoResponse(
                status=Status.OK,
                mode=Mode.BOOTLOADER,
                running_slot=0xFF,
                uid=b"",
                model="",
                compat="acme:blank:",
                bootloader_version="0.9",
                geometry=GEOMETRY,
                slots=(
                    SlotInfo(SlotState.EMPTY, 0, 0, bytes(32), ""),
                    SlotInfo(SlotState.INVALID, 3, 4096, IMAGE_SHA, "1.2.0"),
                ),
            ),
            "no running slot (0xFF), empty uid and model, an empty and an invalid slot",
        ),
        Vector(
            "begin_response_fresh",
            4,
            BeginResponse(status=Status.OK, slot=1, resume_offset=0),
            "new transfer into slot 1",
        ),
        Vector(
            "begin_response_resume",
            4,
            BeginResponse(status=Status.OK, slot=1, resume_offset=0x8000),
            "same size and SHA-256 as the interrupted transfer: resume at the checkpoint",
        ),
        Vector(
            "data_ack_ok",
            9,
            DataAck(status=Status.OK, next_offset=0x0001_0258),
            "cumulative: every byte below next_offset is programmed",
        ),
        Vector(
            "data_ack_gap",
            9,
            DataAck(status=Status.GAP, next_offset=0x0001_0000),
            "a frame arrived ahead of the expected offset; bytes at next_offset missing",
        ),
        Vector(
            "data_ack_busy",
            9,
            DataAck(status=Status.BUSY, next_offset=0x0000_8000),
            "frame beyond the window, dropped",
        ),
        Vector(
            "data_ack_decode_error",
            10,
            DataAck(status=Status.DECODE_ERROR, next_offset=0x0000_4000),
            "an encoded block did not decode: the transfer ends, the slot is dropped",
        ),
        Vector(
            "data_ack_block_length",
            10,
            DataAck(status=Status.BLOCK_LENGTH, next_offset=0x0000_4000),
            "a block decoded to another length than its header says",
        ),
        Vector(
            "data_ack_patch_rejected",
            10,
            DataAck(status=Status.PATCH_REJECTED, next_offset=0),
            "a delta block reads outside the base image",
        ),
        Vector(
            "data_ack_misaligned",
            10,
            DataAck(status=Status.MISALIGNED, next_offset=0),
            "non-OK DATA answers keep next_offset",
        ),
        Vector(
            "verify_response_ok",
            11,
            VerifyResponse(status=Status.OK, sha256=IMAGE_SHA),
            "computed hash matches",
        ),
        Vector(
            "verify_response_failed",
            11,
            ErrorResponse(opcode=Opcode.VERIFY, status=Status.VERIFY_FAILED),
            "hash mismatch: status byte only",
        ),
        Vector(
            "verify_response_failed_with_hash",
            11,
            ErrorResponse(opcode=Opcode.VERIFY, status=Status.VERIFY_FAILED),
            "an MCU that appends the computed hash to VERIFY_FAILED: read as trailing bytes",
            trailing=OLD_SHA,
        ),
        Vector(
            "error_begin_delta_base_mismatch",
            5,
            ErrorResponse(opcode=Opcode.BEGIN, status=Status.DELTA_BASE_MISMATCH),
            "BEGIN(DELTA) whose base_sha256 is not the fallback slot's image: nothing written",
        ),
        Vector(
            "error_response_begin_too_large",
            4,
            ErrorResponse(opcode=Opcode.BEGIN, status=Status.TOO_LARGE),
            "size > slot_size",
        ),
        Vector(
            "error_response_begin_bad_state",
            4,
            ErrorResponse(opcode=Opcode.BEGIN, status=Status.BAD_STATE),
            "a trial is pending",
        ),
        Vector(
            "error_response_begin_not_in_bootloader",
            4,
            ErrorResponse(opcode=Opcode.BEGIN, status=Status.NOT_IN_BOOTLOADER),
            "the application got BEGIN",
        ),
        Vector(
            "error_response_hello_busy",
            1,
            ErrorResponse(opcode=Opcode.HELLO, status=Status.BUSY),
            "HELLO refused",
        ),
        Vector(
            "error_response_info_unsupported",
            3,
            ErrorResponse(opcode=Opcode.INFO, status=Status.UNSUPPORTED),
            "INFO refused",
        ),
        Vector(
            "status_response_activate_ok",
            12,
            StatusResponse(opcode=Opcode.ACTIVATE, status=Status.OK),
            "slot recorded as TRIAL",
        ),
        Vector(
            "status_response_activate_no_image",
            12,
            ErrorResponse(opcode=Opcode.ACTIVATE, status=Status.NO_IMAGE),
            "nothing verified; every non-OK answer except to DATA is an ErrorResponse",
        ),
        Vector(
            "status_response_reset_ok",
            13,
            StatusResponse(opcode=Opcode.RESET, status=Status.OK),
            "sent before rebooting",
        ),
        Vector(
            "status_response_confirm_ok",
            15,
            StatusResponse(opcode=Opcode.CONFIRM, status=Status.OK),
            "running trial slot now CONFIRMED",
        ),
        Vector(
            "status_response_abort_ok",
            16,
            StatusResponse(opcode=Opcode.ABORT, status=Status.OK),
            "staged transfer forgotten",
        ),
        Vector(
            "status_response_set_baud_ok",
            17,
            StatusResponse(opcode=Opcode.SET_BAUD, status=Status.OK),
            "sent at the old rate; both sides switch after it",
        ),
        Vector(
            "status_response_set_baud_bad_baud",
            17,
            ErrorResponse(opcode=Opcode.SET_BAUD, status=Status.BAD_BAUD),
            "rate not supported; nothing changes",
        ),
    ]


def _record(vector: Vector) -> dict[str, Any]:
    opcode, payload = encode_payload(vector.message)
    payload += vector.trailing
    wire = encode_frame(opcode, vector.seq, payload)
    # Refuse to write a vector the codec would not read back as written.
    codec = Codec()
    codec.receive_data(wire)
    event = codec.next_event()
    if not isinstance(event, PacketReceived) or event.message != vector.message:
        raise AssertionError(f"{vector.name}: decodes as {event!r}")
    record: dict[str, Any] = {
        "name": vector.name,
        "direction": "response" if opcode & 0x80 else "request",
        "seq": vector.seq,
        "opcode": opcode,
        "payload": payload.hex(),
        "body": bytes(cobs.decode(wire[:-1])).hex(),
        "hex": wire.hex(),
        "decoded": to_json(vector.message),
    }
    if vector.trailing:
        record["roundtrip"] = False
    record["note"] = vector.note
    return record


def main() -> None:
    records = [_record(v) for v in _vectors()]
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        raise AssertionError("duplicate vector names")
    text = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    FRAMES_JSON.write_text(text, encoding="utf-8")
    print(f"wrote {len(records)} vectors to {FRAMES_JSON}")


if __name__ == "__main__":
    main()

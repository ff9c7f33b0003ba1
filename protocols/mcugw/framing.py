"""Frame layer: COBS-delimited frames with a fixed header and a CRC-32 trailer.

Wire form of one frame::

    COBS( version:u8 | opcode:u8 | seq:u16le | length:u16le | payload | crc32:u32le ) 0x00

The decoder is pure and resynchronises on the 0x00 delimiter, so it handles:
garbage before a frame (that segment fails and is reported, the next frame is
clean), garbage inside a frame (CRC or COBS failure, frame dropped), garbage
after a frame (reported once the next delimiter arrives), runs of delimiters
(ignored), and oversize segments (dropped without growing the buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

from cobs import cobs
from construct import (
    Bytes,
    Checksum,
    ChecksumError,
    ConstructError,
    Int8ul,
    Int16ul,
    Int32ul,
    RawCopy,
    Struct,
    this,
)

from protocols.errors import CrcError, FrameError
from protocols.mcugw.constants import FRAME_VERSION, MAX_BODY
from protocols.mcugw.crc import crc32

DELIMITER = b"\x00"
HEADER_SIZE = 6
CRC_SIZE = 4
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE
#: Longest COBS segment a valid frame can produce; anything longer is garbage.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 2

_FRAME = Struct(
    "body"
    / RawCopy(
        Struct(
            "version" / Int8ul,
            "opcode" / Int8ul,
            "seq" / Int16ul,
            "length" / Int16ul,
            "payload" / Bytes(this.length),
        )
    ),
    "crc" / Checksum(Int32ul, crc32, this.body.data),
)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One integrity-checked frame; the payload is not yet interpreted."""

    opcode: int
    seq: int
    payload: bytes
    version: int = FRAME_VERSION


def encode_frame(opcode: int, seq: int, payload: bytes) -> bytes:
    """Return the wire bytes (COBS-encoded, delimiter-terminated) of one frame."""
    if len(payload) > MAX_BODY - FRAME_OVERHEAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the frame limit")
    body = _FRAME.build(
        {
            "body": {
                "value": {
                    "version": FRAME_VERSION,
                    "opcode": opcode,
                    "seq": seq & 0xFFFF,
                    "length": len(payload),
                    "payload": payload,
                }
            }
        }
    )
    return bytes(cobs.encode(body)) + DELIMITER


def wire_size(payload_len: int) -> int:
    """Bytes on the wire for a frame with this payload length (COBS worst case)."""
    body = payload_len + FRAME_OVERHEAD
    return body + body // 254 + 1 + len(DELIMITER)


def decode_body(body: bytes) -> RawFrame:
    """Check and split one un-COBSed frame body."""
    if len(body) < FRAME_OVERHEAD:
        raise FrameError(f"frame too short ({len(body)} bytes)")
    try:
        parsed = _FRAME.parse(body)
    except ChecksumError as exc:
        raise CrcError("frame CRC-32 mismatch") from exc
    except ConstructError as exc:
        raise FrameError(f"frame layout invalid: {exc}") from exc
    inner = parsed.body.value
    if HEADER_SIZE + inner.length + CRC_SIZE != len(body):
        raise FrameError(f"frame length field {inner.length} disagrees with body size {len(body)}")
    if inner.version != FRAME_VERSION:
        raise FrameError(f"unknown frame version {inner.version}")
    return RawFrame(opcode=inner.opcode, seq=inner.seq, payload=bytes(inner.payload))


class FrameDecoder:
    """Bytes in, frames (or frame errors) out. Never blocks, never reads a clock."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.bytes_in = 0

    def feed(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._buf += data
        if len(self._buf) > 4 * MAX_ENCODED and DELIMITER not in self._buf:
            # Bound memory even if the caller feeds without draining events.
            self._buf = self._buf[-MAX_ENCODED:]
            self._overflow = True

    def next(self) -> RawFrame | FrameError | None:
        """Return the next frame, a FrameError for a damaged segment, or None."""
        while True:
            end = self._buf.find(DELIMITER)
            if end < 0:
                if len(self._buf) > MAX_ENCODED:
                    # Keep memory bounded: discard and remember to report it.
                    self._buf.clear()
                    self._overflow = True
                return None
            segment = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if self._overflow:
                self._overflow = False
                return FrameError("oversize segment discarded")
            if not segment:
                continue  # back-to-back delimiters are idle fill
            if len(segment) > MAX_ENCODED:
                return FrameError("oversize segment discarded")
            try:
                body = cobs.decode(segment)
            except cobs.DecodeError as exc:
                return FrameError(f"COBS decode failed: {exc}")
            try:
                return decode_body(bytes(body))
            except FrameError as exc:
                return exc

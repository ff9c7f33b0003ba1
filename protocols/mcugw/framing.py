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

import struct
from dataclasses import dataclass

from cobs import cobs

from protocols.errors import CrcError, FrameError
from protocols.mcugw.constants import FRAME_VERSION, MAX_BODY
from protocols.mcugw.crc import crc32

DELIMITER = b"\x00"
HEADER_SIZE = 6
CRC_SIZE = 4
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE
#: Longest COBS segment a valid frame can produce; anything longer is garbage.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 2

# Precompiled fixed layouts: every DATA frame goes through these, and a
# declarative (construct) build or parse costs about 100 us a frame in Python,
# which at 1000 frames per MiB was most of the gateway's CPU (bench/README.md).
_HEADER = struct.Struct("<BBHH")  # version, opcode, seq, length
_CRC = struct.Struct("<I")
_MAX_PAYLOAD = MAX_BODY - FRAME_OVERHEAD


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One integrity-checked frame; the payload is not yet interpreted."""

    opcode: int
    seq: int
    payload: bytes
    version: int = FRAME_VERSION


def encode_frame(opcode: int, seq: int, payload: bytes) -> bytes:
    """Return the wire bytes (COBS-encoded, delimiter-terminated) of one frame."""
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the frame limit")
    if not 0 <= opcode <= 0xFF:
        raise ValueError(f"opcode {opcode} does not fit in a byte")
    body = _HEADER.pack(FRAME_VERSION, opcode, seq & 0xFFFF, len(payload)) + payload
    wire: bytes = cobs.encode(body + _CRC.pack(crc32(body)))
    return wire + DELIMITER


def wire_size(payload_len: int) -> int:
    """Bytes on the wire for a frame with this payload length (COBS worst case)."""
    body = payload_len + FRAME_OVERHEAD
    return body + body // 254 + 1 + len(DELIMITER)


def decode_body(body: bytes) -> RawFrame:
    """Check and split one un-COBSed frame body.

    Checks run in the order the layout is read: a length field reaching past
    the body is a layout error, then the CRC over header and payload, then any
    trailing bytes, then the version.
    """
    size = len(body)
    if size < FRAME_OVERHEAD:
        raise FrameError(f"frame too short ({size} bytes)")
    version, opcode, seq, length = _HEADER.unpack_from(body)
    end = HEADER_SIZE + length
    if end + CRC_SIZE > size:
        raise FrameError(
            f"frame layout invalid: length field {length} reaches past the {size}-byte body"
        )
    if _CRC.unpack_from(body, end)[0] != crc32(body[:end]):
        raise CrcError("frame CRC-32 mismatch")
    if end + CRC_SIZE != size:
        raise FrameError(f"frame length field {length} disagrees with body size {size}")
    if version != FRAME_VERSION:
        raise FrameError(f"unknown frame version {version}")
    return RawFrame(opcode=opcode, seq=seq, payload=body[HEADER_SIZE:end])


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
                return decode_body(body)
            except FrameError as exc:
                return exc

"""SMP over a serial console: mcumgr's base64 line framing, sans-I/O.

One SMP packet travels as ``[len:u16be][packet][crc16:u16be]``, base64-encoded and
cut into lines of at most 127 bytes: the first starts with ``0x06 0x09``, each
continuation with ``0x04 0x14``, every line ends with ``\\n``. ``len`` counts the
packet and the CRC; the CRC is CRC16-CCITT (XMODEM: poly 0x1021, init 0) over the
packet. Encoding is the ``smp`` package's own; decoding is ours because the
console also carries log text and line noise, which must be skipped, not fatal.

The decoder resynchronises on its own:

* text before a start delimiter on the same line, or whole lines of console
  output, are skipped (counted in :attr:`ConsoleDecoder.noise_bytes`);
* a continuation with no frame open is skipped;
* a new start while a frame is open drops the open one (reported);
* bad base64, a length that is overrun, or a CRC mismatch drops that frame
  (reported as :class:`BadFrame`), and decoding continues with the next line.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from smp import packet as smppacket

START = b"\x06\x09"  # first line of a frame
CONTINUE = b"\x04\x14"  # every further line of the same frame
LINE_MAX = 127  # mcumgr's MCUMGR_SERIAL_MAX_FRAME: delimiter + base64 + newline
#: Longest line kept while waiting for its newline; longer runs are noise.
BUFFER_MAX = 4096

crc16 = smppacket.crc16_func


def encode(packet: bytes, line_length: int = LINE_MAX) -> bytes:
    """All console lines for one SMP packet, ready to write."""
    return b"".join(smppacket.encode(packet, line_length=line_length))


@dataclass(frozen=True, slots=True)
class Packet:
    """A complete SMP packet (header + CBOR) whose CRC matched."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that was dropped; ``crc`` tells a damaged frame from a malformed one."""

    reason: str
    crc: bool = False


Event = Packet | BadFrame


class ConsoleDecoder:
    """Bytes in, :data:`Event` out. Never raises on input."""

    def __init__(self, buffer_max: int = BUFFER_MAX) -> None:
        self._buf = bytearray()
        self._frame: bytearray | None = None
        self._want = 0
        self._buffer_max = buffer_max
        self.noise_bytes = 0

    @property
    def in_frame(self) -> bool:
        return self._frame is not None

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._buffer_max:
                    self.noise_bytes += len(self._buf)
                    self._buf.clear()
                    if self._frame is not None:
                        events.append(BadFrame("line too long"))
                        self._frame = None
                return events
            line = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            events += self._line(line)

    def _line(self, line: bytes) -> list[Event]:
        starts = [i for i in (line.find(START), line.find(CONTINUE)) if i >= 0]
        if not starts:
            self.noise_bytes += len(line) + 1
            return []
        at = min(starts)
        self.noise_bytes += at
        line = line[at:]
        try:
            chunk = base64.b64decode(line[2:], validate=True)
        except (binascii.Error, ValueError):
            dropped = self._frame is not None or line.startswith(START)
            self._frame = None
            return [BadFrame("bad base64 in a frame line")] if dropped else []
        events: list[Event] = []
        if line.startswith(START):
            if self._frame is not None:
                events.append(BadFrame("frame cut by a new start"))
            if len(chunk) < 2:
                self._frame = None
                return [*events, BadFrame("frame too short for its length field")]
            (self._want,) = struct.unpack(">H", chunk[:2])
            self._frame = bytearray(chunk[2:])
        else:
            if self._frame is None:
                self.noise_bytes += len(line) + 1
                return []
            self._frame += chunk
        done = self._complete()
        return [*events, done] if done is not None else events

    def _complete(self) -> Event | None:
        frame = self._frame
        if frame is None or len(frame) < self._want:
            return None
        self._frame = None
        if len(frame) > self._want or self._want < 2:
            return BadFrame(f"frame is {len(frame)} bytes, its length field says {self._want}")
        body, (crc,) = bytes(frame[:-2]), struct.unpack(">H", frame[-2:])
        if crc16(body) != crc:
            return BadFrame(f"CRC16 0x{crc:04x} != computed 0x{crc16(body):04x}", crc=True)
        return Packet(body)

"""Connection-level codec shared by the client and the simulated MCU.

Bytes in (:meth:`Codec.receive_data`), events out (:meth:`Codec.next_event`);
messages in (:meth:`Codec.encode`), bytes out. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import CrcError, FrameError
from protocols.mcugw.framing import FrameDecoder, RawFrame, encode_frame
from protocols.mcugw.packets import Message, decode_payload, encode_payload


@dataclass(frozen=True, slots=True)
class PacketReceived:
    seq: int
    message: Message


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A damaged or unintelligible frame was discarded."""

    error: FrameError


CodecEvent = PacketReceived | BadFrame


@dataclass
class CodecStats:
    frames_in: int = 0
    crc_errors: int = 0
    frame_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class Codec:
    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.stats = CodecStats()

    def receive_data(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        self._decoder.feed(data)

    def next_event(self) -> CodecEvent | None:
        item = self._decoder.next()
        if item is None:
            return None
        if isinstance(item, RawFrame):
            try:
                message = decode_payload(item.opcode, item.payload)
            except FrameError as exc:
                self.stats.frame_errors += 1
                return BadFrame(exc)
            self.stats.frames_in += 1
            return PacketReceived(seq=item.seq, message=message)
        if isinstance(item, CrcError):
            self.stats.crc_errors += 1
        else:
            self.stats.frame_errors += 1
        return BadFrame(item)

    def encode(self, message: Message, seq: int) -> bytes:
        opcode, payload = encode_payload(message)
        wire = encode_frame(opcode, seq, payload)
        self.stats.bytes_out += len(wire)
        return wire

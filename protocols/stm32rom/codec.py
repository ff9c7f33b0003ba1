"""Sans-I/O codec for the STM32 ROM bootloader's USART protocol (ST AN3155).

No I/O and no clock here: :func:`frames <command_frame>` build the bytes a host
sends, and an :class:`Exchange` walks one command through its stages (command
byte and complement, then address, length, data ...), telling the caller what
to send next and turning the device's bytes into a result or an exception.

Wire rules (AN3155):

* The host opens a session with ``0x7F``; the device answers ``ACK`` (0x79)
  once it has measured the baud rate. Even parity (8E1).
* A command is its code and the code's complement (their XOR is 0xFF).
* Every multi-byte block ends with a checksum: the XOR of the block's bytes,
  so the XOR over block and checksum is 0x00. An address is 4 bytes big-endian
  plus its XOR. A length byte carries ``n - 1``.
* Each stage is answered with ``ACK`` or ``NACK`` (0x1F); a NACK ends the
  command and the device returns to waiting for a command.
"""

from __future__ import annotations

import enum
import functools
import operator
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from protocols.errors import LocalProtocolError, RemoteProtocolError

SYNC = 0x7F
ACK = 0x79
NACK = 0x1F

#: Most bytes one Read Memory or Write Memory command moves.
MAX_BLOCK = 256
#: Most pages one Erase (0x43) command names (its count byte is N - 1; 0xFF means global).
MAX_ERASE_PAGES = 255
#: Extended Erase counts at or above this are special codes, not page counts.
EXT_SPECIAL_FIRST = 0xFFF0


class Command(enum.IntEnum):
    GET = 0x00
    GET_VERSION = 0x01
    GET_ID = 0x02
    READ_MEMORY = 0x11
    GO = 0x21
    WRITE_MEMORY = 0x31
    ERASE = 0x43
    EXTENDED_ERASE = 0x44
    WRITE_PROTECT = 0x63
    WRITE_UNPROTECT = 0x73
    READOUT_PROTECT = 0x82
    READOUT_UNPROTECT = 0x92


class SpecialErase(enum.IntEnum):
    """Extended Erase codes sent instead of a page count."""

    MASS = 0xFFFF
    BANK1 = 0xFFFE
    BANK2 = 0xFFFD


class Nack(RemoteProtocolError):
    """The device answered a stage of a command with NACK."""

    def __init__(self, command: Command, stage: str) -> None:
        super().__init__(f"{command.name} refused (NACK) at its {stage}")
        self.command = command
        self.stage = stage


class BadReply(RemoteProtocolError):
    """The device sent bytes that are not a valid answer to the command in progress."""


def xor(data: Iterable[int], start: int = 0) -> int:
    """The AN3155 checksum: XOR of every byte."""
    return functools.reduce(operator.xor, data, start)


def command_frame(command: Command) -> bytes:
    return bytes([command, command ^ 0xFF])


def address_frame(address: int) -> bytes:
    if not 0 <= address <= 0xFFFFFFFF:
        raise LocalProtocolError(f"address {address:#x} is not a 32-bit address")
    raw = struct.pack(">I", address)
    return raw + bytes([xor(raw)])


def read_length_frame(length: int) -> bytes:
    if not 1 <= length <= MAX_BLOCK:
        raise LocalProtocolError(f"Read Memory moves 1..{MAX_BLOCK} bytes, not {length}")
    n = length - 1
    return bytes([n, n ^ 0xFF])


def write_frame(data: bytes) -> bytes:
    """Length byte, data and checksum; flash wants whole words, so pad with 0xFF yourself."""
    if not 1 <= len(data) <= MAX_BLOCK:
        raise LocalProtocolError(f"Write Memory moves 1..{MAX_BLOCK} bytes, not {len(data)}")
    if len(data) % 4:
        raise LocalProtocolError(f"Write Memory length {len(data)} is not a multiple of 4")
    n = len(data) - 1
    return bytes([n]) + data + bytes([xor(data, n)])


def erase_frame(pages: Sequence[int]) -> bytes:
    """Erase (0x43) of the given page numbers (one byte each)."""
    if not 1 <= len(pages) <= MAX_ERASE_PAGES:
        raise LocalProtocolError(f"Erase names 1..{MAX_ERASE_PAGES} pages, not {len(pages)}")
    if any(not 0 <= p <= 0xFF for p in pages):
        raise LocalProtocolError("Erase page numbers are one byte each")
    body = bytes([len(pages) - 1, *pages])
    return body + bytes([xor(body)])


def global_erase_frame() -> bytes:
    """Erase (0x43) of the whole flash: count 0xFF and its complement."""
    return b"\xff\x00"


def extended_erase_frame(pages: Sequence[int]) -> bytes:
    """Extended Erase (0x44) of the given page or sector numbers (two bytes each)."""
    if not 1 <= len(pages) < EXT_SPECIAL_FIRST:
        raise LocalProtocolError(f"Extended Erase names 1..{EXT_SPECIAL_FIRST - 1} pages")
    if any(not 0 <= p <= 0xFFFF for p in pages):
        raise LocalProtocolError("Extended Erase page numbers are two bytes each")
    body = struct.pack(f">H{len(pages)}H", len(pages) - 1, *pages)
    return body + bytes([xor(body)])


def special_erase_frame(code: SpecialErase) -> bytes:
    raw = struct.pack(">H", code)
    return raw + bytes([xor(raw)])


# ------------------------------------------------------------------ replies


@dataclass(frozen=True, slots=True)
class Ack:
    """One ACK byte (a NACK there raises :class:`Nack`)."""


@dataclass(frozen=True, slots=True)
class Fixed:
    """Exactly ``n`` data bytes."""

    n: int


@dataclass(frozen=True, slots=True)
class Counted:
    """A byte N, then N + 1 data bytes; N must lie in ``lo..hi`` (else it is another answer)."""

    lo: int
    hi: int


Token = Ack | Fixed | Counted


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    send: bytes
    reply: tuple[Token, ...]
    #: Bytes expected back (the longest a counted reply may be).
    reply_len: int = field(init=False)

    def __post_init__(self) -> None:
        total = 0
        for tok in self.reply:
            if isinstance(tok, Ack):
                total += 1
            elif isinstance(tok, Fixed):
                total += tok.n
            else:
                total += 2 + tok.hi
        object.__setattr__(self, "reply_len", total)


class Exchange:
    """One command, stage by stage: send :meth:`data_to_send`, feed the answer.

    ``done`` turns true after the last stage's reply; ``payloads`` holds the data
    blocks of the reply (one per :class:`Fixed`/:class:`Counted` token).
    A NACK raises :class:`Nack`; anything else unexpected raises :class:`BadReply`.
    """

    def __init__(self, command: Command, stages: Sequence[Stage]) -> None:
        self.command = command
        self.stages = tuple(stages)
        self.payloads: list[bytes] = []
        self._n = len(self.stages)
        self._stage = 0
        self._tok = 0
        self._buf = bytearray()
        self._sent = False
        self._count: int | None = None

    @property
    def done(self) -> bool:
        return self._stage >= self._n

    @property
    def stage(self) -> Stage:
        return self.stages[min(self._stage, self._n - 1)]

    @property
    def waiting(self) -> bool:
        """The current stage was sent and its answer is not complete yet."""
        return self._sent and self._stage < self._n

    @property
    def last_stage(self) -> bool:
        return self._stage == self._n - 1

    def data_to_send(self) -> bytes:
        """The bytes of the current stage, once; empty while its answer is awaited."""
        if self._sent or self._stage >= self._n:
            return b""
        self._sent = True
        return self.stages[self._stage].send

    def receive_data(self, data: bytes) -> None:
        if self._stage >= self._n:
            if data:
                raise BadReply(
                    f"{self.command.name}: {len(data)} unexpected bytes after the answer "
                    f"({data[:8].hex(' ')})"
                )
            return
        if not self._sent:
            raise BadReply(f"{self.command.name}: device spoke first ({data[:8].hex(' ')})")
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while self._stage < self._n:
            stage = self.stages[self._stage]
            if self._tok >= len(stage.reply):
                self._stage += 1
                self._tok = 0
                self._sent = False
                if buf:
                    if self._stage >= self._n:
                        raise BadReply(
                            f"{self.command.name}: {len(buf)} unexpected bytes after "
                            f"the answer ({bytes(buf[:8]).hex(' ')})"
                        )
                    raise BadReply(
                        f"{self.command.name}: bytes before the {self.stage.name} was sent "
                        f"({bytes(buf[:8]).hex(' ')})"
                    )
                return
            tok = stage.reply[self._tok]
            if isinstance(tok, Ack):
                if not buf:
                    return
                b = buf.pop(0)
                if b == NACK:
                    raise Nack(self.command, stage.name)
                if b != ACK:
                    raise BadReply(
                        f"{self.command.name}: expected ACK after the {stage.name}, got {b:#04x}"
                    )
            elif isinstance(tok, Fixed):
                if len(buf) < tok.n:
                    return
                self.payloads.append(bytes(buf[: tok.n]))
                del buf[: tok.n]
            else:
                if self._count is None:
                    if not buf:
                        return
                    n = buf[0]
                    if not tok.lo <= n <= tok.hi:
                        raise BadReply(
                            f"{self.command.name}: answer announces {n + 1} bytes, expected "
                            f"{tok.lo + 1}..{tok.hi + 1} (an answer to another command?)"
                        )
                    self._count = n + 1
                    del buf[:1]
                if len(buf) < self._count:
                    return
                self.payloads.append(bytes(buf[: self._count]))
                del buf[: self._count]
                self._count = None
            self._tok += 1


# ------------------------------------------------------------------ commands


def _cmd(command: Command, *reply: Token) -> Stage:
    return Stage("command", command_frame(command), reply or (Ack(),))


def get() -> Exchange:
    """Get: bootloader version and the command codes it supports."""
    return Exchange(Command.GET, [_cmd(Command.GET, Ack(), Counted(1, 31), Ack())])


def get_version() -> Exchange:
    """Get Version: version byte and two option bytes."""
    return Exchange(Command.GET_VERSION, [_cmd(Command.GET_VERSION, Ack(), Fixed(3), Ack())])


def get_id() -> Exchange:
    """Get ID: the two-byte product id (PID)."""
    return Exchange(Command.GET_ID, [_cmd(Command.GET_ID, Ack(), Counted(1, 1), Ack())])


def read_memory(address: int, length: int) -> Exchange:
    return Exchange(
        Command.READ_MEMORY,
        [
            _cmd(Command.READ_MEMORY),
            Stage("address", address_frame(address), (Ack(),)),
            Stage("length", read_length_frame(length), (Ack(), Fixed(length))),
        ],
    )


def go(address: int) -> Exchange:
    return Exchange(
        Command.GO, [_cmd(Command.GO), Stage("address", address_frame(address), (Ack(),))]
    )


def write_memory(address: int, data: bytes) -> Exchange:
    return Exchange(
        Command.WRITE_MEMORY,
        [
            _cmd(Command.WRITE_MEMORY),
            Stage("address", address_frame(address), (Ack(),)),
            Stage("data", write_frame(data), (Ack(),)),
        ],
    )


def erase(pages: Sequence[int] | None) -> Exchange:
    """Erase (0x43) of ``pages``, or the whole flash when ``pages`` is None."""
    body = global_erase_frame() if pages is None else erase_frame(pages)
    return Exchange(Command.ERASE, [_cmd(Command.ERASE), Stage("page list", body, (Ack(),))])


def extended_erase(pages: Sequence[int] | SpecialErase) -> Exchange:
    if isinstance(pages, SpecialErase):
        body = special_erase_frame(pages)
    else:
        body = extended_erase_frame(pages)
    return Exchange(
        Command.EXTENDED_ERASE,
        [_cmd(Command.EXTENDED_ERASE), Stage("page list", body, (Ack(),))],
    )


def readout_unprotect() -> Exchange:
    """Readout Unprotect (AN3155 3.12): ACK, then a second ACK once the whole flash is
    mass-erased and the protection removed; the part then resets (sync again)."""
    return Exchange(Command.READOUT_UNPROTECT, [_cmd(Command.READOUT_UNPROTECT, Ack(), Ack())])


def readout_protect() -> Exchange:
    """Readout Protect (AN3155 3.11): ACK, ACK once RDP is set; the part then resets."""
    return Exchange(Command.READOUT_PROTECT, [_cmd(Command.READOUT_PROTECT, Ack(), Ack())])


@dataclass(frozen=True, slots=True)
class BootloaderInfo:
    """What Get says: protocol version (e.g. 0x22 = 2.2) and supported commands."""

    version: int
    commands: frozenset[int]

    @property
    def version_text(self) -> str:
        return f"{self.version >> 4}.{self.version & 0xF}"

    @property
    def erase_command(self) -> Command:
        if Command.EXTENDED_ERASE in self.commands:
            return Command.EXTENDED_ERASE
        return Command.ERASE


def parse_get(payloads: Sequence[bytes]) -> BootloaderInfo:
    (body,) = payloads
    info = BootloaderInfo(body[0], frozenset(body[1:]))
    if not {Command.GET, Command.READ_MEMORY, Command.WRITE_MEMORY, Command.GO} <= info.commands:
        raise BadReply(
            f"Get lists commands {' '.join(f'{c:02x}' for c in sorted(info.commands))}: "
            "Read/Write Memory or Go missing (readout protection, or not an STM32 loader?)"
        )
    if not {Command.ERASE, Command.EXTENDED_ERASE} & info.commands:
        raise BadReply("Get lists neither Erase (0x43) nor Extended Erase (0x44)")
    return info


def parse_get_id(payloads: Sequence[bytes]) -> int:
    (body,) = payloads
    return int.from_bytes(body, "big")


__all__ = [
    "ACK",
    "MAX_BLOCK",
    "NACK",
    "SYNC",
    "BadReply",
    "BootloaderInfo",
    "Command",
    "Exchange",
    "Nack",
    "SpecialErase",
    "Stage",
    "address_frame",
    "command_frame",
    "erase",
    "extended_erase",
    "get",
    "get_id",
    "get_version",
    "go",
    "parse_get",
    "parse_get_id",
    "read_memory",
    "readout_protect",
    "readout_unprotect",
    "write_memory",
    "xor",
]

"""SMP requests and replies over the console framing, sans-I/O.

:class:`SmpClient` turns a request packet into wire bytes and wire bytes into
:class:`Reply` events, matching each reply to the one outstanding request by
sequence number, group and command. It owns no transport and no clock: the
driver writes what :meth:`SmpClient.send` returns, feeds what it reads to
:meth:`SmpClient.receive_data`, and calls :meth:`SmpClient.give_up` when its
deadline passes (a late answer to a request given up on is then skipped as
stale, not mistaken for an answer to the next one).

Request packets are built with the ``smp`` package's message models where it
has one; the header and CBOR body of replies are read leniently here, because
real servers add fields the models would reject.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

import cbor2
from smp import error as smperr
from smp import image_management as smpimg
from smp import os_management as smpos

from protocols.mcuboot.errors import SequenceError, SmpProtocolError, SmpRejected
from protocols.mcuboot.framing import LINE_MAX, BadFrame, ConsoleDecoder, Packet, encode

HEADER = struct.Struct("!BBHHBB")  # res|ver|op, flags, length, group, seq, command
HEADER_SIZE = HEADER.size
VERSION_2 = 1  # SMP version field value for SMP v2 (errors as {"err": {group, rc}})


class Op(enum.IntEnum):
    READ = 0  # read request
    READ_RSP = 1  # answer to a read
    WRITE = 2  # write request
    WRITE_RSP = 3  # answer to a write


class Group(enum.IntEnum):
    OS = 0  # OS management: echo, reset, params, info
    IMAGE = 1  # image management: state, upload, erase, slot info


class OsCmd(enum.IntEnum):
    ECHO = 0
    RESET = 5
    PARAMS = 6  # MCUmgr parameters: buf_size, buf_count
    INFO = 7  # OS/application info (uname-like format string)
    BOOTLOADER_INFO = 8


class ImgCmd(enum.IntEnum):
    STATE = 0
    UPLOAD = 1
    ERASE = 5
    SLOT_INFO = 6  # per-slot sizes (Zephyr 3.7+)


@dataclass(frozen=True, slots=True)
class SmpHeader:
    op: int
    version: int
    flags: int
    length: int
    group: int
    seq: int
    command: int

    def pack(self) -> bytes:
        first = (self.version & 0b11) << 3 | (self.op & 0b111)
        return HEADER.pack(first, self.flags, self.length, self.group, self.seq, self.command)

    @classmethod
    def unpack(cls, data: bytes) -> SmpHeader:
        if len(data) < HEADER_SIZE:
            raise SmpProtocolError(f"SMP packet of {len(data)} bytes is shorter than its header")
        first, flags, length, group, seq, command = HEADER.unpack(data[:HEADER_SIZE])
        return cls(first & 0b111, (first >> 3) & 0b11, flags, length, group, seq, command)


def encode_packet(op: int, group: int, command: int, seq: int, body: dict[str, Any]) -> bytes:
    """A raw SMP v2 packet, for commands the ``smp`` package has no model for."""
    payload = cbor2.dumps(body, canonical=True)
    return SmpHeader(op, VERSION_2, 0, len(payload), group, seq, command).pack() + payload


def decode_packet(data: bytes) -> tuple[SmpHeader, dict[str, Any]]:
    """Header and CBOR map of one packet; raises :class:`SmpProtocolError` if malformed."""
    header = SmpHeader.unpack(data)
    payload = data[HEADER_SIZE:]
    if header.length != len(payload):
        raise SmpProtocolError(
            f"SMP header says {header.length} bytes of CBOR, packet has {len(payload)}"
        )
    try:
        body = cbor2.loads(payload) if payload else {}
    except (cbor2.CBORDecodeError, ValueError, EOFError) as exc:
        raise SmpProtocolError(f"SMP body is not valid CBOR: {exc}") from exc
    if not isinstance(body, dict):
        raise SmpProtocolError(f"SMP body is a {type(body).__name__}, not a map")
    return header, body


# --- requests -----------------------------------------------------------------------------


def params_read(seq: int) -> bytes:
    return smpos.MCUMgrParametersReadRequest(sequence=seq).BYTES


def os_info_read(seq: int, fmt: str) -> bytes:
    return smpos.OSApplicationInfoReadRequest(format=fmt, sequence=seq).BYTES


def bootloader_info_read(seq: int, query: str | None = None) -> bytes:
    return smpos.BootloaderInformationReadRequest(query=query, sequence=seq).BYTES


def reset(seq: int) -> bytes:
    return smpos.ResetWriteRequest(sequence=seq).BYTES


def state_read(seq: int) -> bytes:
    return smpimg.ImageStatesReadRequest(sequence=seq).BYTES


def state_write(seq: int, hash: bytes | None, confirm: bool) -> bytes:
    return smpimg.ImageStatesWriteRequest(hash=hash, confirm=confirm, sequence=seq).BYTES


def slot_info_read(seq: int) -> bytes:
    return encode_packet(Op.READ, Group.IMAGE, ImgCmd.SLOT_INFO, seq, {})


def upload(
    seq: int,
    off: int,
    data: bytes,
    *,
    total: int | None = None,
    sha: bytes | None = None,
    image: int = 0,
) -> bytes:
    """One image upload chunk; ``total``, ``sha`` and ``image`` only in the first (``off`` 0)."""
    if off == 0:
        return smpimg.ImageUploadWriteRequest(
            off=0, data=data, image=image, len=total, sha=sha, sequence=seq
        ).BYTES
    return smpimg.ImageUploadWriteRequest(off=off, data=data, sequence=seq).BYTES


def cbor_bytes_overhead(n: int) -> int:
    """Extra bytes CBOR spends on the length of an ``n``-byte string beyond the 1-byte case."""
    return 0 if n < 24 else 1 if n < 0x100 else 2 if n < 0x10000 else 4


# --- replies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    header: SmpHeader
    body: dict[str, Any]


def _error_name(group: int | None, rc: int) -> str:
    table: type[enum.IntEnum]
    if group is None:
        table = smperr.MGMT_ERR
    elif group == Group.IMAGE:
        table = smpimg.IMG_MGMT_ERR
    elif group == Group.OS:
        table = smpos.OS_MGMT_RET_RC
    else:
        return f"GROUP{group}_RC{rc}"
    try:
        name = table(rc).name
    except ValueError:
        return f"RC{rc}"
    return name if group is None else f"{Group(group).name}_{name}"


def check(reply: Reply, what: str) -> dict[str, Any]:
    """The reply's body, or :class:`SmpRejected` if it carries an SMP error."""
    body = reply.body
    err = body.get("err")
    if isinstance(err, dict):
        rc, group = err.get("rc", 0), err.get("group")
        if isinstance(rc, int) and rc != 0:
            grp = group if isinstance(group, int) else None
            raise SmpRejected(what, rc, _error_name(grp, rc), grp)
    rc = body.get("rc", 0)
    if isinstance(rc, int) and rc != 0:
        rsn = body.get("rsn")
        reason = rsn if isinstance(rsn, str) else ""
        raise SmpRejected(what, rc, _error_name(None, rc), None, reason)
    return body


@dataclass(frozen=True, slots=True)
class _Pending:
    seq: int
    op: int
    group: int
    command: int


class SmpClient:
    """Requests in flight by sequence number; bytes in, :class:`Reply` / :class:`BadFrame` out.

    Usually one request is outstanding; an upload may keep a few in flight (the
    device answers them in order), each matched to its own answer.
    """

    #: How many given-up sequence numbers are remembered as "late, skip".
    STALE_MEMORY = 16

    def __init__(self, first_seq: int = 0, line_length: int = LINE_MAX) -> None:
        self._seq = first_seq & 0xFF
        self._line_length = line_length
        self._decoder = ConsoleDecoder()
        self._pending: dict[int, _Pending] = {}
        self._stale: deque[int] = deque(maxlen=self.STALE_MEMORY)
        self.stale_replies = 0
        #: False until a reply matched: answers left over from a previous host session
        #: (a gateway killed mid-request) are skipped until then, not taken as errors.
        self.synced = False

    @property
    def noise_bytes(self) -> int:
        return self._decoder.noise_bytes

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        return seq

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send(self, packet: bytes) -> bytes:
        """Wire bytes for ``packet``, which joins the outstanding requests."""
        header = SmpHeader.unpack(packet)
        if header.op not in (Op.READ, Op.WRITE):
            raise ValueError("only requests can be sent")
        self._pending[header.seq] = _Pending(header.seq, header.op, header.group, header.command)
        return encode(packet, self._line_length)

    def give_up(self) -> None:
        """Forget every outstanding request; their late answers will be skipped."""
        self._stale.extend(self._pending)
        self._pending.clear()

    def receive_data(self, data: bytes) -> list[Reply | BadFrame]:
        """Events for ``data``; raises :class:`SmpProtocolError` for an answer that cannot be."""
        events: list[Reply | BadFrame] = []
        for event in self._decoder.feed(data):
            if isinstance(event, Packet):
                reply = self._match(event.data)
                if reply is not None:
                    events.append(reply)
            else:
                events.append(event)
        return events

    def _match(self, data: bytes) -> Reply | None:
        header, body = decode_packet(data)
        if header.op not in (Op.READ_RSP, Op.WRITE_RSP):
            raise SmpProtocolError(
                f"got an SMP request (op {header.op}) where an answer was due: "
                "is the port looped back or is another host talking?"
            )
        pending = self._pending.get(header.seq)
        if pending is None:
            if header.seq in self._stale or not self.synced:
                self.stale_replies += 1
                return None
            want = ", ".join(f"seq {s}" for s in self._pending) or "nothing"
            raise SequenceError(f"answer with seq {header.seq} while waiting for {want}")
        if (header.group, header.command) != (pending.group, pending.command):
            raise SmpProtocolError(
                f"answer to group {header.group} command {header.command} for a request to "
                f"group {pending.group} command {pending.command} (seq {header.seq})"
            )
        if header.op != pending.op + 1:
            raise SmpProtocolError(f"answer op {header.op} to a request with op {pending.op}")
        del self._pending[header.seq]
        self.synced = True
        return Reply(header, body)

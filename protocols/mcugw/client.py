"""Sans-I/O bootloader client: request bookkeeping over the shared codec.

One command is outstanding at a time; DATA frames bypass that slot and are
windowed by :class:`protocols.mcugw.transfer.TransferWindow`. The caller supplies
``now`` and moves bytes: :meth:`receive_data` in, :meth:`data_to_send` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import LocalProtocolError
from protocols.mcugw.codec import BadFrame, Codec, PacketReceived
from protocols.mcugw.constants import Opcode
from protocols.mcugw.framing import DELIMITER
from protocols.mcugw.packets import (
    DataAck,
    DataRequest,
    ErrorResponse,
    Request,
    Response,
    StatusResponse,
)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the outstanding request."""

    request: Request
    response: Response


@dataclass(frozen=True, slots=True)
class Acked:
    """A DATA acknowledgement (cumulative offset, or a GAP report)."""

    ack: DataAck
    seq: int  # seq of the DATA frame that triggered it


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The outstanding request got no answer after all its attempts."""

    request: Request
    attempts: int


@dataclass(frozen=True, slots=True)
class Garbled:
    """A damaged frame was dropped; informational, the protocol recovers."""

    reason: str


ClientEvent = Reply | Acked | TimedOut | Garbled


@dataclass
class _Pending:
    request: Request
    seq: int
    wire: bytes
    timeout: float
    deadline: float
    attempts_left: int
    attempts: int = 1
    garble_resends_left: int = 0
    noisy_extra: int = 0  # silence attempts granted once the answer came back damaged
    garbled: bool = False  # a damaged frame arrived since the last send
    heard: bool = False  # any byte arrived since the last send


class ClientProtocol:
    def __init__(self) -> None:
        self._codec = Codec()
        self._seq = 0
        self._out = bytearray()
        self._pending: _Pending | None = None
        self._events: list[ClientEvent] = []
        self.retries = 0
        self.stale = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def flush_line(self) -> None:
        """Queue a lone delimiter so the peer discards any partial garbage."""
        self._out += DELIMITER

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def send_request(
        self,
        request: Request,
        now: float,
        timeout: float,
        attempts: int,
        garble_resends: int = 0,
        noisy_extra: int = 0,
    ) -> None:
        """Queue ``request``; up to ``attempts`` sends on silence.

        ``garble_resends`` extra sends are made at once when a damaged frame
        arrives while the answer is awaited: on a noisy link a long answer (INFO)
        is often hit, and waiting out the whole timeout for it wastes the try.
        The first damaged frame also grants ``noisy_extra`` more attempts on
        silence: on a link shown to be noisy, a silent try is most likely a
        request lost to the same noise. Only for requests harmless twice.
        """
        if isinstance(request, DataRequest):
            raise LocalProtocolError("DATA is sent with send_data, not send_request")
        if self._pending is not None:
            raise LocalProtocolError(
                f"{request.OPCODE.name} sent while {self._pending.request.OPCODE.name} is pending"
            )
        seq = self._next_seq()
        wire = self._codec.encode(request, seq)
        self._pending = _Pending(
            request, seq, wire, timeout, now + timeout, attempts - 1, 1, garble_resends, noisy_extra
        )
        self._out += wire

    def cancel_request(self) -> None:
        self._pending = None

    def send_data(self, request: DataRequest) -> int:
        """Queue one DATA frame; returns its sequence number."""
        seq = self._next_seq()
        self._out += self._codec.encode(request, seq)
        return seq

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        return None if self._pending is None else self._pending.deadline

    def receive_data(self, data: bytes) -> None:
        if data and self._pending is not None:
            self._pending.heard = True
        self._codec.receive_data(data)

    def poll(self, now: float) -> None:
        """Retry or time out the pending request once its deadline has passed."""
        p = self._pending
        if p is None:
            return
        late = now >= p.deadline
        # A damaged frame, or bytes with no answer by the deadline (a lost
        # delimiter leaves them unterminated), show a live but noisy link:
        # resend at once, without spending one of the attempts kept for silence.
        if (p.garbled or (late and p.heard)) and p.garble_resends_left > 0:
            p.garble_resends_left -= 1
            p.attempts_left += p.noisy_extra
            p.noisy_extra = 0
            self._resend(p, now)
            return
        if not late:
            return
        if p.attempts_left > 0:
            p.attempts_left -= 1
            p.attempts += 1
            self._resend(p, now)
        else:
            self._pending = None
            self._events.append(TimedOut(p.request, p.attempts))

    def _resend(self, p: _Pending, now: float) -> None:
        p.garbled = p.heard = False
        p.deadline = now + p.timeout
        self.retries += 1
        self._out += DELIMITER + p.wire

    def next_event(self) -> ClientEvent | None:
        if self._events:
            return self._events.pop(0)
        while True:
            ev = self._codec.next_event()
            if ev is None:
                return None
            if isinstance(ev, BadFrame):
                if self._pending is not None:
                    self._pending.garbled = True
                return Garbled(str(ev.error))
            assert isinstance(ev, PacketReceived)
            result = self._classify(ev)
            if result is not None:
                return result

    def _classify(self, ev: PacketReceived) -> ClientEvent | None:
        msg = ev.message
        if isinstance(msg, DataAck):
            return Acked(msg, ev.seq)
        p = self._pending
        opcode = _opcode_of(msg)
        if opcode is None:
            self.stale += 1  # a request: we never serve requests
            return None
        if p is None or ev.seq != p.seq or opcode is not p.request.OPCODE:
            self.stale += 1  # answer to an earlier attempt or earlier request
            return None
        self._pending = None
        return Reply(p.request, msg)  # type: ignore[arg-type]


def _opcode_of(msg: object) -> Opcode | None:
    if isinstance(msg, StatusResponse | ErrorResponse):
        return msg.opcode
    if hasattr(msg, "status"):
        return msg.OPCODE  # type: ignore[attr-defined, no-any-return]
    return None


__all__ = ["Acked", "ClientEvent", "ClientProtocol", "Garbled", "Reply", "TimedOut"]

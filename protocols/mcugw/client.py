"""Sans-I/O bootloader client: request bookkeeping over the shared codec.

One command is outstanding at a time; DATA frames bypass that slot and are
windowed by :class:`protocols.mcugw.transfer.TransferWindow`. The caller supplies
``now`` and moves bytes: :meth:`receive_data` in, :meth:`data_to_send` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocols.errors import LocalProtocolError
from protocols.mcugw.codec import BadFrame, Codec, PacketReceived
from protocols.mcugw.constants import Opcode
from protocols.mcugw.framing import DELIMITER, wire_size
from protocols.mcugw.packets import (
    DataAck,
    DataRequest,
    ErrorResponse,
    Request,
    Response,
    StatusResponse,
    encode_payload,
)

#: Chance a command may be left to fail on a link as noisy as the one observed,
#: when its retry budget is derived from that link (about 20 commands a flash).
FAIL_TARGET = 1e-6


@dataclass
class LinkLoss:
    """What this link has shown of its loss: exchanges tried, answered, and their bytes.

    An exchange is one send of a request (or a DATA frame) and its answer. If
    every byte survives with the same chance, an exchange of ``n`` bytes gets
    through with probability ``exp(-rate * n)``; :meth:`rate` estimates that
    per-byte loss rate, and :meth:`tries_for` the sends an exchange of ``n``
    bytes needs so that all of them fail with a chance below ``target``.
    """

    tries: int = 0
    answered: int = 0
    wire: int = 0  # bytes of every exchange tried, both directions

    def record(self, tries: int, answered: int, wire: int) -> None:
        self.tries += tries
        self.answered += answered
        self.wire += wire

    def rate(self) -> float:
        """Per-byte loss rate; 0 until the link has both answered and lost exchanges.

        A link that never answered shows nothing about noise (an absent or
        foreign device), and one that never lost anything needs nothing beyond
        the fixed budgets. Once it has lost some, one more loss is assumed than
        was seen, so a short lucky run never reads as a clean link.
        """
        if not self.answered or self.answered >= self.tries or not self.wire:
            return 0.0
        survived = self.answered / (self.tries + 1)
        return -math.log(survived) / (self.wire / self.tries)

    def tries_for(self, nbytes: int, target: float = FAIL_TARGET) -> int:
        """Sends an exchange of ``nbytes`` needs on this link (at least 1)."""
        fail = -math.expm1(-self.rate() * nbytes)  # 1 - exp(-rate * n), exact when small
        return _tries(fail, target)

    def silent_tries_for(self, request: int, exchange: int, target: float = FAIL_TARGET) -> int:
        """Tries on silence a command needs: silences must not all come before a success.

        A try is silent when the ``request`` bytes are lost, and succeeds when
        the whole ``exchange`` (request and answer) gets through; damaged
        answers in between cost no silent try. So what must stay below
        ``target`` is the chance that N silences come first, each with odds
        lost / (lost + through).
        """
        rate = self.rate()
        lost = -math.expm1(-rate * request)
        through = math.exp(-rate * exchange)
        return _tries(lost / (lost + through), target)


def _tries(fail: float, target: float) -> int:
    """Tries so that all of them failing, each with chance ``fail``, is below ``target``."""
    if fail <= 0.0:
        return 1
    if fail >= 1.0:
        return 1_000_000
    return max(1, math.ceil(math.log(target) / math.log(fail)))


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
    sends: int = 1
    answer_wire: int = 0  # expected wire bytes of the answer, for the loss estimate
    resend_cap: int = 0  # damage resends the loss estimate may grow the budget to
    silent_cap: int = 0  # tries on silence it may grow to, once damage showed the MCU alive
    resent: int = 0  # damage resends made


class ClientProtocol:
    def __init__(self) -> None:
        self._codec = Codec()
        self._seq = 0
        self._out = bytearray()
        self._pending: _Pending | None = None
        self._events: list[ClientEvent] = []
        self.retries = 0
        self.stale = 0
        self.loss = LinkLoss()

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
        answer_size: int = 16,
        resend_cap: int = 0,
        silent_cap: int = 0,
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
            request, seq, wire, timeout, now + timeout, attempts - 1, 1, garble_resends,
            noisy_extra, answer_wire=wire_size(answer_size), resend_cap=resend_cap,
            silent_cap=silent_cap,
        )  # fmt: skip
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
        damaged = p.garbled or (late and p.heard)
        if damaged and p.garble_resends_left <= 0 and p.resent < p.resend_cap:
            p.garble_resends_left = self._more_resends(p)
        if damaged and p.garble_resends_left > 0:
            p.garble_resends_left -= 1
            p.resent += 1
            p.attempts_left += p.noisy_extra
            p.noisy_extra = 0
            self._resend(p, now)
            return
        if not late:
            return
        if p.attempts_left <= 0 and p.resent and p.attempts < p.silent_cap:
            p.attempts_left = self._more_silent_tries(p)
        if p.attempts_left > 0:
            p.attempts_left -= 1
            p.attempts += 1
            self._resend(p, now)
        else:
            self._pending = None
            self._account(p, None)
            self._events.append(TimedOut(p.request, p.attempts))

    def _resend(self, p: _Pending, now: float) -> None:
        p.garbled = p.heard = False
        p.deadline = now + p.timeout
        p.sends += 1
        self.retries += 1
        self._out += DELIMITER + p.wire

    def _seen(self, p: _Pending) -> LinkLoss:
        """The link's loss so far, with ``p``'s unanswered sends counted in."""
        seen = LinkLoss(self.loss.tries, self.loss.answered, self.loss.wire)
        seen.record(p.sends, 0, p.sends * (len(p.wire) + p.answer_wire))
        return seen

    def _more_resends(self, p: _Pending) -> int:
        """Damage resends still due to ``p``, by the loss seen so far and its own tries."""
        want = self._seen(p).tries_for(len(p.wire) + p.answer_wire)
        return max(0, min(p.resend_cap, want) - p.resent)

    def _more_silent_tries(self, p: _Pending) -> int:
        """Tries on silence still due to ``p`` (the MCU has answered it, damaged)."""
        want = self._seen(p).silent_tries_for(len(p.wire), len(p.wire) + p.answer_wire)
        return max(0, min(p.silent_cap, want) - p.attempts)

    def _account(self, p: _Pending, answer: Response | None) -> None:
        if p.request.OPCODE is Opcode.RESET:
            return
        answer_wire = p.answer_wire
        if answer is not None:
            answer_wire = wire_size(len(encode_payload(answer)[1]))
        self.loss.record(p.sends, int(answer is not None), p.sends * (len(p.wire) + answer_wire))

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
        self._account(p, msg)  # type: ignore[arg-type]
        return Reply(p.request, msg)  # type: ignore[arg-type]


def _opcode_of(msg: object) -> Opcode | None:
    if isinstance(msg, StatusResponse | ErrorResponse):
        return msg.opcode
    if hasattr(msg, "status"):
        return msg.OPCODE  # type: ignore[attr-defined, no-any-return]
    return None


__all__ = [
    "FAIL_TARGET",
    "Acked",
    "ClientEvent",
    "ClientProtocol",
    "Garbled",
    "LinkLoss",
    "Reply",
    "TimedOut",
]

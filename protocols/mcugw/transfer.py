"""Sans-I/O sliding-window sender for DATA frames.

Keeps at most ``window`` bytes beyond the cumulative acknowledgement in flight,
resends only what is reported missing (GAP) or what times out, and never reads a
clock: every method takes ``now`` from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import DeviceTimeout, RemoteProtocolError
from protocols.mcugw.client import LinkLoss
from protocols.mcugw.constants import Status
from protocols.mcugw.errors import DeviceRejected
from protocols.mcugw.framing import wire_size
from protocols.mcugw.packets import DataAck, DataRequest
from protocols.mcugw.timing import MAX_RTO_S

#: Consecutive retransmission timeouts without progress before giving up, on a
#: link that has lost nothing; a lossy one gets what its loss calls for (§6).
MAX_TIMEOUTS = 8
#: The most consecutive timeouts any link gets (each one a grown RTO).
MAX_LOSSY_TIMEOUTS = 30
#: Clean frames in a row before the chunk size is doubled again.
GROW_AFTER = 32
#: Smallest chunk the sender shrinks to on a noisy link.
MIN_CHUNK = 64


#: DATA seqs remembered for ordering GAP reports (bounded; seqs wrap at 65536).
_SEQ_MEMORY = 4096
#: Wire bytes of one DATA acknowledgement (status, next_offset).
_ACK_WIRE = wire_size(5)


@dataclass
class _InFlight:
    data: bytes
    sent_at: float
    sends: int
    order: int = -1  # send order of the latest copy


class TransferWindow:
    def __init__(
        self,
        image: bytes,
        *,
        start: int,
        chunk: int,
        window: int,
        rto: float,
        nak_holdoff: float,
        align: int = 1,
        loss: LinkLoss | None = None,
    ) -> None:
        if chunk <= 0 or window < chunk:
            raise ValueError(f"window {window} must hold at least one chunk of {chunk}")
        self._image = image
        self.max_chunk = chunk
        self.chunk = chunk
        self._align = max(1, align)
        self._min_chunk = min(chunk, max(self._align, MIN_CHUNK - MIN_CHUNK % self._align))
        self._clean = 0
        self.window = window
        self._base_rto = rto
        self._rto = rto
        self._holdoff = nak_holdoff
        self.acked = start
        self._next = start
        self._inflight: dict[int, _InFlight] = {}
        self._resend: list[int] = []
        self._nak_due: dict[int, float] = {}  # GAP reports waiting out the hold-off
        self._order = 0
        self._seq_order: dict[int, int] = {}
        self._deadline: float | None = None
        self._timeouts = 0
        self._loss = loss or LinkLoss()  # the link's loss before this transfer
        self.retransmits = 0
        self.frames_sent = 0
        self.frames_acked = 0  # frames (or resent pieces) the MCU acknowledged
        self.exchange_bytes = 0  # DATA frames sent and their acknowledgements, on the wire

    @property
    def done(self) -> bool:
        return self.acked >= len(self._image)

    @property
    def in_flight(self) -> int:
        """Bytes sent beyond the cumulative acknowledgement."""
        return self._next - self.acked

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        times = [t for t in (self._deadline, *self._nak_due.values()) if t is not None]
        return min(times) if times else None

    def frames_to_send(self, now: float) -> list[DataRequest]:
        out: list[DataRequest] = []
        for offset, due in list(self._nak_due.items()):
            if due <= now:
                del self._nak_due[offset]
                if offset not in self._resend:
                    self._resend.append(offset)
        if self._resend:
            self._shrink()  # once per loss event, however many frames it cost
        for offset in self._resend:
            entry = self._inflight.get(offset)
            if entry is None:
                continue
            # Resend a lost frame in pieces of the (now smaller) chunk size.
            for piece_at in range(0, len(entry.data), self.chunk):
                piece = entry.data[piece_at : piece_at + self.chunk]
                self._inflight[offset + piece_at] = _InFlight(piece, now, entry.sends + 1)
                self.retransmits += 1
                out.append(DataRequest(offset=offset + piece_at, data=piece))
        self._resend.clear()
        while self._next < len(self._image):
            end = min(self._next + self.chunk, len(self._image))
            if end - self.acked > self.window:
                break
            data = self._image[self._next : end]
            self._inflight[self._next] = _InFlight(data=data, sent_at=now, sends=1)
            out.append(DataRequest(offset=self._next, data=data))
            self._next = end
        if out and self._deadline is None:
            self._deadline = now + self._rto
        self.frames_sent += len(out)
        self.exchange_bytes += sum(wire_size(4 + len(r.data)) + _ACK_WIRE for r in out)
        return out

    def note_sent(self, offset: int, seq: int) -> None:
        """Record the wire seq of a frame just queued, so GAP reports can be ordered."""
        self._order += 1
        entry = self._inflight.get(offset)
        if entry is not None:
            entry.order = self._order
        self._seq_order.pop(seq, None)
        self._seq_order[seq] = self._order
        if len(self._seq_order) > _SEQ_MEMORY:
            del self._seq_order[next(iter(self._seq_order))]

    def on_ack(self, ack: DataAck, now: float, seq: int | None = None) -> None:
        if ack.next_offset > len(self._image) or ack.next_offset > self._next:
            raise RemoteProtocolError(
                f"MCU acknowledged offset {ack.next_offset} beyond what was sent ({self._next})"
            )
        # GAP carries the MCU's next expected offset, which may still be queued
        # for programming: it is a resend request, never an acknowledgement.
        if ack.status is not Status.GAP and ack.next_offset > self.acked:
            self.acked = ack.next_offset
            for offset in [o for o in self._inflight if o < self.acked]:
                self._nak_due.pop(offset, None)
                self.frames_acked += 1
                if self._inflight.pop(offset).sends == 1:
                    self._grow()
            self._timeouts = 0
            self._rto = self._base_rto
            self._deadline = None if self.done else now + self._rto
        if ack.status is Status.GAP:
            self._request_resend(ack.next_offset, now, seq)
        elif ack.status not in (Status.OK, Status.BUSY):
            # DeviceRejected: its status becomes the twin's error code (MCU_DECODE_ERROR ...).
            raise DeviceRejected("DATA", ack.status, f"stream offset {ack.next_offset}")

    def _shrink(self) -> None:
        """A lost frame: halve the chunk so fewer bytes ride on each CRC on a noisy link."""
        self._clean = 0
        half = self.chunk // 2
        self.chunk = max(self._min_chunk, half - half % self._align)

    def _grow(self) -> None:
        self._clean += 1
        if self._clean >= GROW_AFTER and self.chunk < self.max_chunk:
            self._clean = 0
            self.chunk = min(self.max_chunk, self.chunk * 2)

    def _request_resend(self, offset: int, now: float, seq: int | None) -> None:
        entry = self._inflight.get(offset)
        if entry is None or offset in self._resend:
            return
        trigger = self._seq_order.get(seq) if seq is not None else None
        # A UART delivers in order: if the frame that exposed the hole left after
        # our latest copy of the missing one, that copy is lost for certain.
        certain = trigger is not None and entry.order >= 0 and trigger > entry.order
        if certain or now - entry.sent_at >= self._holdoff:
            self._nak_due.pop(offset, None)
            self._resend.append(offset)
        else:
            # The last copy may still be on the wire; resend once it surely is not.
            self._nak_due.setdefault(offset, entry.sent_at + self._holdoff)

    def _timeout_budget(self) -> int:
        """Timeouts in a row allowed: the fixed 8, or what the loss seen so far calls for.

        The frame at the cumulative offset must get through with its
        acknowledgement once in that many rounds (chance of failing below
        ``FAIL_TARGET``), estimated from the link's loss before this transfer
        and every DATA exchange of it so far.
        """
        seen = LinkLoss(self._loss.tries, self._loss.answered, self._loss.wire)
        seen.record(self.frames_sent, self.frames_acked, self.exchange_bytes)
        want = seen.tries_for(wire_size(4 + self.chunk) + _ACK_WIRE)
        return max(MAX_TIMEOUTS, min(MAX_LOSSY_TIMEOUTS, want))

    def on_timeout(self, now: float) -> None:
        """Call when ``now`` has passed :meth:`next_deadline` without progress."""
        if self._deadline is None or now < self._deadline or self.done:
            return  # a GAP hold-off expiring is handled by frames_to_send
        self._timeouts += 1
        if self._timeouts > self._timeout_budget():
            raise DeviceTimeout(
                f"no DATA acknowledgement beyond offset {self.acked} "
                f"after {self._timeouts - 1} retransmission timeouts"
            )
        # Nothing moved for a whole RTO, so the link is idle: resend every frame
        # still outstanding (the MCU drops duplicates by offset).
        for offset in sorted(self._inflight):
            if offset not in self._resend:
                self._resend.append(offset)
        self._nak_due.clear()
        # A serial link has no congestion to back off from; grow gently, in case
        # the MCU is slower than it advertised.
        self._rto = min(self._rto * 1.5, max(MAX_RTO_S, self._base_rto), 4 * self._base_rto)
        self._deadline = now + self._rto

"""Sans-I/O sliding-window sender for DATA frames.

Keeps at most ``window`` bytes beyond the cumulative acknowledgement in flight,
resends only what is reported missing (GAP) or what times out, and never reads a
clock: every method takes ``now`` from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.constants import Status
from protocols.errors import DeviceTimeout, RemoteProtocolError
from protocols.packets import DataAck, DataRequest
from protocols.timing import MAX_RTO_S

#: Consecutive retransmission timeouts without progress before giving up.
MAX_TIMEOUTS = 8


@dataclass
class _InFlight:
    data: bytes
    sent_at: float
    sends: int


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
    ) -> None:
        if chunk <= 0 or window < chunk:
            raise ValueError(f"window {window} must hold at least one chunk of {chunk}")
        self._image = image
        self._chunk = chunk
        self._window = window
        self._base_rto = rto
        self._rto = rto
        self._holdoff = nak_holdoff
        self.acked = start
        self._next = start
        self._inflight: dict[int, _InFlight] = {}
        self._resend: list[int] = []
        self._deadline: float | None = None
        self._timeouts = 0
        self.retransmits = 0
        self.frames_sent = 0

    @property
    def done(self) -> bool:
        return self.acked >= len(self._image)

    def next_deadline(self) -> float | None:
        return None if self.done else self._deadline

    def frames_to_send(self, now: float) -> list[DataRequest]:
        out: list[DataRequest] = []
        for offset in self._resend:
            entry = self._inflight.get(offset)
            if entry is None:
                continue
            entry.sent_at, entry.sends = now, entry.sends + 1
            self.retransmits += 1
            out.append(DataRequest(offset=offset, data=entry.data))
        self._resend.clear()
        while self._next < len(self._image):
            end = min(self._next + self._chunk, len(self._image))
            if end - self.acked > self._window:
                break
            data = self._image[self._next : end]
            self._inflight[self._next] = _InFlight(data=data, sent_at=now, sends=1)
            out.append(DataRequest(offset=self._next, data=data))
            self._next = end
        if out and self._deadline is None:
            self._deadline = now + self._rto
        self.frames_sent += len(out)
        return out

    def on_ack(self, ack: DataAck, now: float) -> None:
        if ack.next_offset > len(self._image) or ack.next_offset > self._next:
            raise RemoteProtocolError(
                f"MCU acknowledged offset {ack.next_offset} beyond what was sent ({self._next})"
            )
        if ack.next_offset > self.acked:
            self.acked = ack.next_offset
            for offset in [o for o in self._inflight if o < self.acked]:
                del self._inflight[offset]
            self._timeouts = 0
            self._rto = self._base_rto
            self._deadline = None if self.done else now + self._rto
        if ack.status is Status.GAP:
            self._request_resend(ack.next_offset, now)
        elif ack.status not in (Status.OK, Status.BUSY):
            raise RemoteProtocolError(
                f"DATA at {ack.next_offset} rejected: {ack.status.name} ({ack.status.describe()})"
            )

    def _request_resend(self, offset: int, now: float) -> None:
        entry = self._inflight.get(offset)
        if entry is None or offset in self._resend:
            return
        if now - entry.sent_at >= self._holdoff:
            self._resend.append(offset)

    def on_timeout(self, now: float) -> None:
        """Call when ``now`` has passed :meth:`next_deadline` without progress."""
        if self._deadline is None or now < self._deadline or self.done:
            return
        self._timeouts += 1
        if self._timeouts > MAX_TIMEOUTS:
            raise DeviceTimeout(
                f"no DATA acknowledgement beyond offset {self.acked} "
                f"after {MAX_TIMEOUTS} retransmission timeouts"
            )
        if self.acked in self._inflight and self.acked not in self._resend:
            self._resend.append(self.acked)
        self._rto = min(self._rto * 2, max(MAX_RTO_S, self._base_rto))
        self._deadline = now + self._rto

"""Link model around a :class:`McuCore`: UART pacing at the configured baud and byte faults.

The driver is the simulator's only clock user. It delivers each received frame
when its last byte would have arrived at ``baud`` (8N1) and releases each answer
when its last byte would have left, so throughput and latency are those of a
real UART. ``baud=0`` turns pacing off.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable

from protocols.mcugw.constants import BITS_PER_BYTE
from simulators.mcu.core import McuCore
from simulators.mcu.options import LinkFaultSpec


class LinkFaults:
    """Seeded byte corruption and loss, per direction (rx = towards the MCU)."""

    def __init__(self, spec: LinkFaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self.corrupted = 0
        self.dropped = 0

    def _apply(self, data: bytes, corrupt: float, drop: float) -> bytes:
        if not corrupt and not drop:
            return data
        out = bytearray()
        rng = self._rng
        for b in data:
            if drop and rng.random() < drop:
                self.dropped += 1
                continue
            if corrupt and rng.random() < corrupt:
                b ^= 1 << rng.randrange(8)
                self.corrupted += 1
            out.append(b)
        return bytes(out)

    def rx(self, data: bytes) -> bytes:
        return self._apply(data, self.spec.corrupt_rx, self.spec.drop_rx)

    def tx(self, data: bytes) -> bytes:
        return self._apply(data, self.spec.corrupt_tx, self.spec.drop_tx)


def _split_frames(data: bytes) -> list[bytes]:
    """Cut at delimiters (kept) so each frame is delivered at its own arrival time."""
    parts: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\x00", start)
        if end < 0:
            if start < len(data):
                parts.append(data[start:])
            return parts
        parts.append(data[start : end + 1])
        start = end + 1


class McuDriver:
    """Paces one core's UART with event-loop timers.

    One timer callback per due event (a frame landing, an answer leaving, a
    flash operation ending) replaces a task waking on an Event under a fresh
    timeout: a grouped ``sim --count N`` serves dozens of 921600-baud links on
    one core, and the per-wake-up cost was most of its CPU. The timing model is
    unchanged: each event is handled at the time it is due.
    """

    def __init__(
        self,
        core: McuCore,
        baud: int,
        sink: Callable[[bytes], None],
        faults: LinkFaults | None = None,
    ) -> None:
        self.core = core
        self.baud = baud
        self._sink = sink
        self.faults = faults or LinkFaults(LinkFaultSpec())
        self._rx: deque[tuple[float, bytes]] = deque()
        self._tx: deque[tuple[float, bytes]] = deque()
        self._rx_clock = 0.0
        self._tx_clock = 0.0
        self._stopped = False
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_at: float | None = None  # None with a timer: "as soon as possible"
        core.on_baud = self.set_baud  # the link paces at whatever rate SET_BAUD chose

    def set_baud(self, baud: int) -> None:
        # An unpaced link (baud 0) stays unpaced after a SET_BAUD, as the C builds do.
        if self.baud > 0:
            self.baud = baud

    def _wire(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    def feed(self, data: bytes) -> None:
        """Bytes written by the host; they reach the MCU at the link's pace."""
        now = asyncio.get_running_loop().time()
        for piece in _split_frames(self.faults.rx(data)):
            self._rx_clock = max(self._rx_clock, now) + self._wire(len(piece))
            self._rx.append((self._rx_clock, piece))
        if self._rx:
            self._schedule(self._rx[0][0])

    def stop(self) -> None:
        self._stopped = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, when: float) -> None:
        """Run :meth:`_service` at ``when`` unless it already runs earlier."""
        if self._done is None or self._done.done():
            return  # not serving yet (run() services on start) or finished
        if self._timer is not None and (self._timer_at is None or self._timer_at <= when):
            return
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            self._timer, self._timer_at = loop.call_soon(self._service), None
        else:
            self._timer, self._timer_at = loop.call_at(when, self._service), when

    async def run(self) -> None:
        """Serve until :meth:`stop`; a :class:`PowerCut` propagates to the caller."""
        if self._stopped:
            return
        self._done = asyncio.get_running_loop().create_future()
        self._service()
        try:
            await self._done
        finally:
            self._cancel_timer()

    def _service(self) -> None:
        self._timer = None
        done = self._done
        if self._stopped or done is None or done.done():
            return
        loop = asyncio.get_running_loop()
        try:
            nxt = self._step(loop.time())
        except BaseException as exc:  # a PowerCut (or a bug) ends run() with it
            done.set_exception(exc)
            return
        if nxt is not None:
            self._schedule(nxt)

    def _step(self, now: float) -> float | None:
        """Handle everything due by ``now``; returns when something next falls due."""
        core = self.core
        while self._rx and self._rx[0][0] <= now:
            when, piece = self._rx.popleft()
            core.advance(when)
            core.receive(when, piece)
        core.advance(now)
        for when, data in core.take_output(now):
            data = self.faults.tx(data)
            self._tx_clock = max(self._tx_clock, when) + self._wire(len(data))
            self._tx.append((self._tx_clock, data))
        while self._tx and self._tx[0][0] <= now:
            self._sink(self._tx.popleft()[1])
        times = [q[0][0] for q in (self._rx, self._tx) if q]
        deadline = core.next_deadline()
        if deadline is not None:
            times.append(deadline)
        return min(times) if times else None

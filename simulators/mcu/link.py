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
        self._wake = asyncio.Event()
        self._stopped = False
        core.on_baud = self.set_baud  # the link paces at whatever rate SET_BAUD chose

    def set_baud(self, baud: int) -> None:
        self.baud = baud

    def _wire(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    def feed(self, data: bytes) -> None:
        """Bytes written by the host; they reach the MCU at the link's pace."""
        now = asyncio.get_running_loop().time()
        for piece in _split_frames(self.faults.rx(data)):
            self._rx_clock = max(self._rx_clock, now) + self._wire(len(piece))
            self._rx.append((self._rx_clock, piece))
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`; a :class:`PowerCut` propagates to the caller."""
        loop = asyncio.get_running_loop()
        core = self.core
        while not self._stopped:
            now = loop.time()
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
            self._wake.clear()
            if times:
                timeout = max(0.0, min(times) - loop.time())
                if timeout == 0.0:
                    continue
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            else:
                await self._wake.wait()

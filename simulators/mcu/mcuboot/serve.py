"""Serve one :class:`McubootDevice` on a pseudo-terminal at a paced baud rate.

Bytes from the host reach the device when their last bit would have arrived
at ``baud`` (8N1, 10 bits a byte) and answers leave no faster, so link
efficiency and timeouts are those of a real UART. ``baud=0`` turns pacing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from simulators.mcu.link import LinkFaults
from simulators.mcu.mcuboot.device import McubootDevice
from simulators.mcu.options import LinkFaultSpec
from simulators.mcu.pty import PtyPort, link_pty

BITS_PER_BYTE = 10


class PacedPty(PtyPort):
    """One board's serial console on a pty, paced at the line rate."""

    def __init__(self, device: McubootDevice, baud: int, faults: LinkFaults | None = None) -> None:
        super().__init__()
        self.device = device
        self.baud = baud
        self.faults = faults or LinkFaults(LinkFaultSpec())
        self._rx: deque[tuple[float, bytes]] = deque()
        self._tx: deque[tuple[float, bytes]] = deque()
        self._rx_clock = 0.0
        self._tx_clock = 0.0
        self._wake = asyncio.Event()
        self._stopped = False

    def _wire(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    def _on_readable(self) -> None:
        data = self.receive()
        if not data:
            return
        now = asyncio.get_running_loop().time()
        data = self.faults.rx(data)
        for line in data.splitlines(keepends=True):  # each line lands at its own time
            self._rx_clock = max(self._rx_clock, now) + self._wire(len(line))
            self._rx.append((self._rx_clock, line))
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._on_readable)
        device = self.device
        try:
            while not self._stopped:
                now = loop.time()
                while self._rx and self._rx[0][0] <= now:
                    when, piece = self._rx.popleft()
                    self._collect(device.poll(when))
                    device.receive(when, piece)
                self._collect(device.poll(now))
                while self._tx and self._tx[0][0] <= now:
                    self.send(self._tx.popleft()[1])
                times = [q[0][0] for q in (self._rx, self._tx) if q]
                deadline = device.next_deadline()
                if deadline is not None:
                    times.append(deadline)
                self._wake.clear()
                if not times:
                    await self._wake.wait()
                    continue
                timeout = min(times) - loop.time()
                if timeout <= 0:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            loop.remove_reader(self.master)
            loop.remove_writer(self.master)

    def _collect(self, out: list[tuple[float, bytes]]) -> None:
        for when, sent in out:
            data = self.faults.tx(sent)
            self._tx_clock = max(self._tx_clock, when) + self._wire(len(data))
            self._tx.append((self._tx_clock, data))


async def serve(
    devices: Sequence[McubootDevice],
    baud: int,
    announce: Callable[[str], None],
    faults: Callable[[], LinkFaults] | None = None,
    links: Sequence[Path] = (),
) -> int:
    """Serve each device on its own pty until SIGTERM/SIGINT; announces ``PTY <path>`` each."""
    loop = asyncio.get_running_loop()
    ptys = [PacedPty(d, baud, faults() if faults else None) for d in devices]
    for i, pty in enumerate(ptys):
        if i < len(links):
            link_pty(pty.path, links[i])
        announce(f"PTY {pty.path}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners = [asyncio.create_task(pty.run()) for pty in ptys]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*runners, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for pty in ptys:
            pty.stop()
        for task in (*runners, stopper):
            task.cancel()
        await asyncio.gather(*runners, stopper, return_exceptions=True)
        for pty in ptys:
            pty.close()
            pty.device.flash.close()
        for link in links:
            with contextlib.suppress(OSError):
                link.unlink()  # unplugged
    return 0

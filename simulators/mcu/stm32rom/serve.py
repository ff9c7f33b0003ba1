"""Serve a virtual STM32 on a pseudo-terminal, with the UART paced at the given baud.

Each byte takes 11 bit times (8E1) in both directions: a chunk the host writes
reaches the chip when its last byte would have arrived, and the chip's answer
leaves the pty when its last byte would have been sent. A pty cannot carry
parity, so the chip simply reads 8-bit bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from simulators.mcu.link import LinkFaults
from simulators.mcu.options import LinkFaultSpec
from simulators.mcu.pty import PtyPort, link_pty
from simulators.mcu.stm32rom.chip import (
    DEFAULT_MODEL,
    MODELS,
    Chip,
    Faults,
    SimConfigError,
)

BITS_PER_BYTE = 11  # 8E1
#: asyncio's epoll waits whole milliseconds (rounded up), so a timer alone would
#: add up to 1 ms to every wait: the last part of each wait is slept on the clock.
EPOLL_GRAIN_S = 0.001
#: Waits shorter than this are skipped (a nanosleep costs about this much itself);
#: the link clocks keep counting, so throughput stays that of the wire.
MIN_SLEEP_S = 0.0001


async def wait_until(when: float) -> None:
    """Return at event-loop time ``when``, to about 0.1 ms rather than epoll's 1 ms.

    The timer wakes the loop within a millisecond before ``when``; the rest is
    slept blocking. Nothing else in the simulator runs meanwhile, as nothing else
    runs on the chip: bytes the host sends then are noted when it wakes.
    """
    loop = asyncio.get_running_loop()
    early = when - loop.time() - EPOLL_GRAIN_S
    if early > 0:
        await asyncio.sleep(early)
    rest = when - loop.time()
    if rest >= MIN_SLEEP_S:
        time.sleep(rest)  # noqa: ASYNC251 (deliberate: see the docstring)


class PacedPty(PtyPort):
    """One pty as the chip's UART (implements ``chip.Port``), paced at the line rate."""

    def __init__(self, baud: int, faults: LinkFaults | None = None) -> None:
        super().__init__()
        self.baud = baud
        self.faults = faults or LinkFaults(LinkFaultSpec())
        self._rx = bytearray()
        self._due: deque[tuple[float, bytes]] = deque()
        self._rx_clock = 0.0
        self._tx_clock = 0.0
        self._arrived = asyncio.Event()
        self._work_debt = 0.0

    def _wire(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.master, self._on_readable)

    def _on_readable(self) -> None:
        data = self.faults.rx(self.receive())
        if not data:
            return
        now = asyncio.get_running_loop().time()
        self._rx_clock = max(self._rx_clock, now) + self._wire(len(data))
        self._due.append((self._rx_clock, data))
        self._arrived.set()

    async def read(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._due and self._due[0][0] <= now:
                self._rx += self._due.popleft()[1]
            if len(self._rx) >= n:
                out = bytes(self._rx[:n])
                del self._rx[:n]
                return out
            if self._due and self._due[0][0] - now < MIN_SLEEP_S:
                self._rx += self._due.popleft()[1]
            elif self._due:
                await wait_until(self._due[0][0])  # the wire is still carrying it
            else:
                self._arrived.clear()
                await self._arrived.wait()

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._tx_clock = max(self._tx_clock, loop.time()) + self._wire(len(data))
        if self._tx_clock - loop.time() >= MIN_SLEEP_S:
            await wait_until(self._tx_clock)
        self.send(self.faults.tx(data))

    async def sleep(self, seconds: float) -> None:
        # Short flash operations add up until they are worth a timer wait.
        self._work_debt += seconds
        if self._work_debt >= MIN_SLEEP_S:
            await wait_until(asyncio.get_running_loop().time() + self._work_debt)
            self._work_debt = 0.0


def _unlink(link: Path) -> None:
    with contextlib.suppress(OSError):
        link.unlink()


async def serve(chip: Chip, baud: int, link: Path | None = None) -> int:
    """Run ``chip`` on a new pty until SIGTERM/SIGINT; prints ``PTY <path>`` first."""
    loop = asyncio.get_running_loop()
    port = PacedPty(baud, LinkFaults(chip.faults.link))
    port.start()
    if link is not None:
        link_pty(port.path, link)
    print(f"PTY {port.path}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    firmware = asyncio.create_task(chip.run(port))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([firmware, stopper], return_when=asyncio.FIRST_COMPLETED)
        if firmware in done:
            firmware.result()  # a crash of the model is a bug: show it
    finally:
        for task in (firmware, stopper):
            task.cancel()
        await asyncio.gather(firmware, stopper, return_exceptions=True)
        port.close()
        chip.flash.close()
        if link is not None:
            _unlink(link)  # unplugged
    return 0


def main(args: argparse.Namespace) -> int:
    """``mcu-gateway sim --pty --bootloader stm32-rom``; raises ValueError for bad options."""
    name = args.model or DEFAULT_MODEL
    if name not in MODELS:
        raise SimConfigError(f"--model {name!r}: stm32-rom models are {', '.join(MODELS)}")
    if args.count != 1:
        raise SimConfigError("--count: the stm32-rom simulator serves one MCU per process")
    uid = None
    if args.uid:
        try:
            uid = bytes.fromhex(args.uid)
        except ValueError:
            raise SimConfigError(f"--uid {args.uid!r} is not hex") from None
    faults = Faults.parse(args.fault)
    with tempfile.TemporaryDirectory(prefix="mcu-sim-stm32-") as tmp:
        chip = Chip(
            args.state or Path(tmp),
            MODELS[name],
            boot0=args.boot0 == "high",
            uid=uid,
            flash_scale=args.flash_scale,
            faults=faults,
            rdp=None if getattr(args, "rdp", None) is None else args.rdp == "1",
        )
        status = asyncio.run(serve(chip, args.baud, args.link))
    sys.stdout.flush()
    return status

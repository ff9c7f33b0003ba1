"""Runs virtual MCUs on pseudo-terminals, so clients use the real pyserial path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tty
from collections.abc import Callable
from pathlib import Path

from simulators.mcu.core import McuCore
from simulators.mcu.flash import PowerCut
from simulators.mcu.link import LinkFaults, McuDriver

#: Exit status of a simulator process that suffered an injected power cut.
POWER_CUT_EXIT = 3


class PtyPort:
    """The master side of one raw pseudo-terminal, shared by every simulator.

    Writes never block and keep their order: what the kernel will not take now is
    kept and sent when the pty is writable again. Bytes nobody will ever read are
    dropped, as a UART with nothing attached drops them.
    """

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        # Raw from the start: no echo or line editing before a client configures it.
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()

    def send(self, data: bytes) -> None:
        self._pending += data
        self._drain()

    def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                loop.add_writer(self.master, self._on_writable)
                return
            except OSError:
                self._pending.clear()  # nobody reading and buffer gone: bytes lost
                return
            del self._pending[:n]

    def _on_writable(self) -> None:
        asyncio.get_running_loop().remove_writer(self.master)
        self._drain()

    def receive(self) -> bytes:
        """What the client sent since last time; empty while no client holds the pty."""
        try:
            return os.read(self.master, 65536)
        except OSError:
            return b""  # EAGAIN, or EIO while no client holds the slave open

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop running: nothing was watched
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master)
            loop.remove_writer(self.master)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyEndpoint(PtyPort):
    """One pty wired to one :class:`McuDriver`."""

    def __init__(self, core: McuCore, baud: int) -> None:
        super().__init__()
        self.driver = McuDriver(core, baud, self.send, LinkFaults(core.opts.link))

    def _on_readable(self) -> None:
        data = self.receive()
        if data:
            self.driver.feed(data)

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.master, self._on_readable)


def link_pty(target: str, link: Path) -> None:
    """Point a stable symlink at the pty (replaced atomically), like socat's link=."""
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)


async def serve(
    cores: list[McuCore],
    baud: int,
    announce: Callable[[str], None],
    links: list[Path] | None = None,
) -> int:
    """Serve each core on its own pty until SIGTERM/SIGINT; returns the exit status."""
    loop = asyncio.get_running_loop()
    endpoints = [PtyEndpoint(core, baud) for core in cores]
    for i, ep in enumerate(endpoints):
        ep.start()
        if links:
            link_pty(ep.path, links[i])
        announce(f"PTY {ep.path}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(ep.driver.run()) for ep in endpoints]
    stopper = asyncio.create_task(stop.wait())
    status = 0
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is stopper:
                continue
            exc = task.exception()
            if isinstance(exc, PowerCut):
                print(f"sim: {exc}", file=sys.stderr, flush=True)
                status = POWER_CUT_EXIT
            elif exc is not None:
                raise exc
    finally:
        for ep in endpoints:
            ep.driver.stop()
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for ep, core in zip(endpoints, cores, strict=True):
            ep.close()
            core.flash.close()
        for link in links or ():
            with contextlib.suppress(OSError):
                link.unlink()  # unplugged
    return status

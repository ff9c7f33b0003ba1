"""In-process link: a :class:`protocols.transport.Transport` wired straight to a core."""

from __future__ import annotations

import asyncio

from protocols.errors import TransportDisconnected
from simulators.mcu.link import McuDriver


class MemoryTransport:
    """The host end of an in-memory UART to a :class:`McuDriver`."""

    def __init__(self, name: str = "mem://mcu") -> None:
        self.name = name
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.driver: McuDriver | None = None
        self._closed = False

    def deliver(self, data: bytes) -> None:
        """Sink for the driver: bytes the MCU sent."""
        self._queue.put_nowait(data)

    async def write(self, data: bytes) -> None:
        if self._closed or self.driver is None:
            raise TransportDisconnected(f"{self.name}: closed")
        self.driver.feed(data)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if not data:
            raise TransportDisconnected(f"{self.name}: closed")
        # Like a UART's driver buffer: everything that has arrived, in one read.
        while not self._queue.empty():
            more = self._queue.get_nowait()
            if not more:
                self._queue.put_nowait(more)  # the close marker stays for the next read
                break
            data += more
        return data

    def set_baud(self, baud: int) -> None:
        pass  # the driver's rate follows SET_BAUD on the MCU side

    async def close(self) -> None:
        self._closed = True
        self._queue.put_nowait(b"")

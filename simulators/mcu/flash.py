"""NOR flash model: erase sets 0xFF, programming only clears bits, writes are aligned.

Every operation goes straight to the backing file, so killing the process at any
point is a power cut with exactly the flash contents a real part would keep.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from simulators.mcu.models import McuModel


class PowerCut(Exception):
    """Raised by a fault hook: power is lost before or during a flash operation."""


class FlashError(Exception):
    """A misuse of the flash the real part would reject (misaligned, out of range)."""


#: Called before each operation with (op index, kind, address); may raise PowerCut.
OpHook = Callable[[int, str, int], None]


class Flash:
    def __init__(self, model: McuModel, path: Path | None = None) -> None:
        self.model = model
        self.size = model.flash_size
        self._path = path
        self._fd: int | None = None
        if path is not None and path.exists() and path.stat().st_size == self.size:
            self._mem = bytearray(path.read_bytes())
        else:
            self._mem = bytearray(b"\xff" * self.size)
            if path is not None:
                path.write_bytes(self._mem)
        if path is not None:
            self._fd = os.open(path, os.O_RDWR)
        self.ops = 0
        self.hook: OpHook | None = None
        self.erase_count = 0
        self.program_count = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def snapshot(self) -> bytes:
        return bytes(self._mem)

    def read(self, addr: int, n: int) -> bytes:
        self._check(addr, n)
        return bytes(self._mem[addr : addr + n])

    def _check(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > self.size:
            raise FlashError(f"access 0x{addr:x}+{n} outside flash of {self.size} bytes")

    def _persist(self, addr: int, n: int) -> None:
        if self._fd is not None:
            os.pwrite(self._fd, self._mem[addr : addr + n], addr)

    def _before(self, kind: str, addr: int) -> None:
        self.ops += 1
        if self.hook is not None:
            self.hook(self.ops, kind, addr)

    def erase_sector(self, addr: int) -> float:
        """Erase the sector at ``addr``; returns the modelled duration in seconds."""
        sector = self.model.sector_size
        if addr % sector:
            raise FlashError(f"erase at 0x{addr:x} not sector-aligned")
        self._check(addr, sector)
        self._before("erase", addr)
        self._mem[addr : addr + sector] = b"\xff" * sector
        self._persist(addr, sector)
        self.erase_count += 1
        return self.model.erase_us / 1e6

    def program(self, addr: int, data: bytes) -> float:
        """Program ``data`` at ``addr`` (bits only go 1→0); returns modelled seconds.

        A power cut raised by the hook after the first half models a torn write.
        """
        w = self.model.write_size
        if addr % w or len(data) % w:
            raise FlashError(f"program 0x{addr:x}+{len(data)} not aligned to {w}")
        self._check(addr, len(data))
        try:
            self._before("program", addr)
        except PowerCut:
            half = (len(data) // 2) - (len(data) // 2) % w
            self._apply(addr, data[:half])
            raise
        self._apply(addr, data)
        pages = -(-len(data) // self.model.page_size)
        self.program_count += pages
        return pages * self.model.program_us / 1e6

    def _apply(self, addr: int, data: bytes) -> None:
        if not data:
            return
        cur = self._mem[addr : addr + len(data)]
        anded = int.from_bytes(cur, "little") & int.from_bytes(data, "little")
        self._mem[addr : addr + len(data)] = anded.to_bytes(len(data), "little")
        self._persist(addr, len(data))

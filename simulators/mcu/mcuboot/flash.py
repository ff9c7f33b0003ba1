"""Two MCUboot slots in one file: a ``kill -9`` of the simulator is a power cut.

Each slot ends in MCUboot's image trailer (swap-move/swap-scratch layout, 8-byte
write alignment)::

    ... | swap_info (8) | copy_done (8) | image_ok (8) | magic (16) |  <- slot end

Erased flash reads 0xFF; a flag is set when its first byte is 0x01; the magic is
MCUboot's 16-byte ``boot_img_magic``.
"""

from __future__ import annotations

import os
from pathlib import Path

ERASED = 0xFF
FLAG_SET = 0x01
ALIGN = 8
BOOT_MAGIC = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
MAGIC_OFF = -16
IMAGE_OK_OFF = MAGIC_OFF - ALIGN
COPY_DONE_OFF = IMAGE_OK_OFF - ALIGN
SWAP_INFO_OFF = COPY_DONE_OFF - ALIGN
#: Room kept at each slot's end for the trailer (one 4 KiB sector, as MCUboot needs).
TRAILER_RESERVE = 0x1000
SECTOR = 0x1000

PRIMARY = 0
SECONDARY = 1


class SlotFlash:
    """The primary and secondary slot, persisted byte for byte in ``path``."""

    def __init__(self, path: Path, slot_size: int) -> None:
        if slot_size % SECTOR or slot_size < 4 * SECTOR:
            raise ValueError(f"slot size {slot_size} must be a multiple of {SECTOR} and >= 16 KiB")
        self.path = path
        self.slot_size = slot_size
        size = 2 * slot_size
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fresh = not path.exists() or path.stat().st_size != size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if self.fresh:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, bytes([ERASED]) * size, 0)
        self._mem = bytearray(os.pread(self._fd, size, 0))

    @property
    def max_image(self) -> int:
        return self.slot_size - TRAILER_RESERVE

    def _base(self, slot: int) -> int:
        return slot * self.slot_size

    def read(self, slot: int, off: int, n: int) -> bytes:
        base = self._base(slot)
        return bytes(self._mem[base + off : base + off + n])

    def slot(self, slot: int) -> bytes:
        return self.read(slot, 0, self.slot_size)

    def write(self, slot: int, off: int, data: bytes) -> None:
        """Program bytes (written through to the file at once: a kill keeps them)."""
        if off < 0 or off + len(data) > self.slot_size:
            raise ValueError("write outside the slot")
        at = self._base(slot) + off
        self._mem[at : at + len(data)] = data
        os.pwrite(self._fd, data, at)

    def erase(self, slot: int, off: int = 0, n: int | None = None) -> None:
        n = self.slot_size - off if n is None else n
        self.write(slot, off, bytes([ERASED]) * n)

    # --- trailer ---------------------------------------------------------------------

    def _flag(self, slot: int, at: int) -> bool:
        return self.read(slot, self.slot_size + at, 1)[0] == FLAG_SET

    def magic_ok(self, slot: int) -> bool:
        return self.read(slot, self.slot_size + MAGIC_OFF, 16) == BOOT_MAGIC

    def image_ok(self, slot: int) -> bool:
        return self._flag(slot, IMAGE_OK_OFF)

    def copy_done(self, slot: int) -> bool:
        return self._flag(slot, COPY_DONE_OFF)

    def set_trailer(
        self, slot: int, *, magic: bool, image_ok: bool = False, copy_done: bool = False
    ) -> None:
        trailer = bytearray([ERASED] * -SWAP_INFO_OFF)
        if copy_done:
            trailer[COPY_DONE_OFF - SWAP_INFO_OFF] = FLAG_SET
        if image_ok:
            trailer[IMAGE_OK_OFF - SWAP_INFO_OFF] = FLAG_SET
        if magic:
            trailer[MAGIC_OFF - SWAP_INFO_OFF :] = BOOT_MAGIC
        self.write(slot, self.slot_size + SWAP_INFO_OFF, bytes(trailer))

    def clear_trailer(self, slot: int) -> None:
        self.erase(slot, self.slot_size - TRAILER_RESERVE, TRAILER_RESERVE)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

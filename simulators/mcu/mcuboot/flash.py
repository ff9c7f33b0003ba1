"""MCUboot's flash areas in one file, with NOR rules: a ``kill -9`` of the simulator is a power cut.

Areas are numbered as Zephyr's ``img_mgmt`` numbers slots: image N has its primary
slot at ``2N`` and its secondary at ``2N + 1`` (:func:`area`).

NOR flash rules (docs/bootloaders-mcuboot.md, "Flash"):

* erase works on whole 4 KiB sectors and sets every byte to 0xFF;
* programming can only clear bits (the new byte is ``old & data``), in units of the
  write size (8 bytes, MCUboot's ``BOOT_MAX_ALIGN``) at aligned offsets.

Each slot ends in MCUboot's image trailer, laid out as
``boot/bootutil/src/bootutil_priv.h`` draws it for swap-using-move::

    | swap status (max_sectors * 3 entries of 8) | swap_size (8) | swap_info (8) |
    | copy_done (8) | image_ok (8) | magic (16) |  <- slot end

A flag is set when its first byte is 0x01 (``BOOT_FLAG_SET``) and unset when 0xFF;
``swap_info`` holds ``image << 4 | swap type``; each status entry holds the state
byte MCUboot wrote after finishing that step of a swap (``swap_move.c``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

ERASED = 0xFF
FLAG_SET = 0x01
WRITE_SIZE = 8  # BOOT_MAX_ALIGN: every trailer field and status entry is one write unit
BOOT_MAGIC = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
SECTOR = 0x1000
STATUS_STATE_COUNT = 3  # BOOT_STATUS_MOVE_STATE_COUNT (1) + BOOT_STATUS_SWAP_STATE_COUNT (2)

# Trailer fields, as offsets from the slot end (bootutil_priv.h / bootutil_public.c).
MAGIC_OFF = -16
IMAGE_OK_OFF = MAGIC_OFF - WRITE_SIZE
COPY_DONE_OFF = IMAGE_OK_OFF - WRITE_SIZE
SWAP_INFO_OFF = COPY_DONE_OFF - WRITE_SIZE
SWAP_SIZE_OFF = SWAP_INFO_OFF - WRITE_SIZE
TRAILER_INFO = -SWAP_SIZE_OFF

PRIMARY = 0
SECONDARY = 1


def area(image: int, slot: int) -> int:
    """Flash area of ``slot`` (0 primary, 1 secondary) of ``image``."""
    return 2 * image + slot


class FlashError(ValueError):
    """A write that NOR flash would not take: unaligned, or outside the area."""


class SlotFlash:
    """Two slots per image, persisted byte for byte in ``path`` (written through at once)."""

    def __init__(self, path: Path, slot_size: int, images: int = 1) -> None:
        if slot_size % SECTOR or slot_size < 8 * SECTOR:
            raise ValueError(f"slot size {slot_size} must be a multiple of {SECTOR} and >= 32 KiB")
        if not 1 <= images <= 2:
            raise ValueError(f"{images} images: this MCUboot model has 1 or 2")
        self.path = path
        self.slot_size = slot_size
        self.images = images
        size = 2 * images * slot_size
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fresh = not path.exists() or path.stat().st_size != size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if self.fresh:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, bytes([ERASED]) * size, 0)
        self._mem = bytearray(os.pread(self._fd, size, 0))
        #: BOOT_MAX_IMG_SECTORS: status entries are reserved for every sector of a slot.
        self.max_sectors = slot_size // SECTOR
        trailer = self.max_sectors * STATUS_STATE_COUNT * WRITE_SIZE + TRAILER_INFO
        self.trailer_sectors = -(-trailer // SECTOR)
        self.ops = 0  # flash operations so far (erase or program), for tests and faults

    @property
    def areas(self) -> int:
        return 2 * self.images

    @property
    def max_image(self) -> int:
        """``app_max_size()`` of swap_move.c: the trailer sectors and one spare sector
        (the primary slot's room to move the old image up) are not for the image."""
        return self.slot_size - (self.trailer_sectors + 1) * SECTOR

    @property
    def status_off(self) -> int:
        """``boot_status_off()``: where the swap status entries start in a slot."""
        return self.slot_size - (self.max_sectors * STATUS_STATE_COUNT * WRITE_SIZE + TRAILER_INFO)

    def _base(self, index: int) -> int:
        if not 0 <= index < self.areas:
            raise FlashError(f"no flash area {index}")
        return index * self.slot_size

    def read(self, index: int, off: int, n: int) -> bytes:
        base = self._base(index)
        return bytes(self._mem[base + off : base + off + n])

    def slot(self, index: int) -> bytes:
        return self.read(index, 0, self.slot_size)

    def program(self, index: int, off: int, data: bytes) -> None:
        """Program ``data``: bits can only be cleared; offset and length are write units."""
        if off % WRITE_SIZE or len(data) % WRITE_SIZE:
            raise FlashError(f"program of {len(data)} bytes at {off}: not {WRITE_SIZE}-aligned")
        if off < 0 or off + len(data) > self.slot_size:
            raise FlashError("program outside the slot")
        at = self._base(index) + off
        old = int.from_bytes(self._mem[at : at + len(data)], "little")
        new = (old & int.from_bytes(data, "little")).to_bytes(len(data), "little")
        self._mem[at : at + len(new)] = new
        os.pwrite(self._fd, new, at)
        self.ops += 1

    def erase(self, index: int, off: int = 0, n: int | None = None) -> None:
        """Erase whole sectors to 0xFF."""
        n = self.slot_size - off if n is None else n
        if off % SECTOR or n % SECTOR or off < 0 or off + n > self.slot_size:
            raise FlashError(f"erase of {n} bytes at {off}: not whole sectors of the slot")
        at = self._base(index) + off
        self._mem[at : at + n] = bytes([ERASED]) * n
        os.pwrite(self._fd, bytes([ERASED]) * n, at)
        self.ops += 1

    def copy_sector(self, src: int, src_off: int, dst: int, dst_off: int) -> None:
        """``boot_copy_region()`` of one sector: erase the destination, program the source."""
        data = self.read(src, src_off, SECTOR)
        self.erase(dst, dst_off, SECTOR)
        self.program(dst, dst_off, data)

    def load(self, index: int, data: bytes) -> None:
        """What a programmer does: erase the sectors ``data`` needs, program it padded."""
        sectors = -(-len(data) // SECTOR)
        self.erase(index, 0, sectors * SECTOR)
        pad = -len(data) % WRITE_SIZE
        self.program(index, 0, data + bytes([ERASED]) * pad)

    # --- trailer ---------------------------------------------------------------------

    def _field(self, index: int, at: int, n: int = 1) -> bytes:
        return self.read(index, self.slot_size + at, n)

    def _write_field(self, index: int, at: int, value: bytes) -> None:
        unit = value + bytes([ERASED]) * (-len(value) % WRITE_SIZE)
        self.program(index, self.slot_size + at, unit)

    def magic(self, index: int) -> str:
        """``good``, ``unset`` (erased) or ``bad``, as ``boot_magic_decode()`` says."""
        value = self._field(index, MAGIC_OFF, 16)
        if value == BOOT_MAGIC:
            return "good"
        return "unset" if value == bytes([ERASED]) * 16 else "bad"

    def magic_ok(self, index: int) -> bool:
        return self.magic(index) == "good"

    def flag(self, index: int, at: int) -> str:
        """``set``, ``unset`` or ``bad`` (``boot_flag_decode()``)."""
        value = self._field(index, at)[0]
        return "set" if value == FLAG_SET else "unset" if value == ERASED else "bad"

    def image_ok(self, index: int) -> bool:
        return self.flag(index, IMAGE_OK_OFF) == "set"

    def copy_done(self, index: int) -> bool:
        return self.flag(index, COPY_DONE_OFF) == "set"

    def swap_info(self, index: int) -> int:
        """The swap type written when a swap started; 1 (NONE) if erased."""
        value = self._field(index, SWAP_INFO_OFF)[0]
        return 1 if value == ERASED else value & 0x0F

    def swap_size(self, index: int) -> int:
        return int(struct.unpack("<I", self._field(index, SWAP_SIZE_OFF, 4))[0])

    def write_magic(self, index: int) -> None:
        self._write_field(index, MAGIC_OFF, BOOT_MAGIC)

    def write_image_ok(self, index: int) -> None:
        self._write_field(index, IMAGE_OK_OFF, bytes([FLAG_SET]))

    def write_copy_done(self, index: int) -> None:
        self._write_field(index, COPY_DONE_OFF, bytes([FLAG_SET]))

    def write_swap_info(self, index: int, swap_type: int, image: int) -> None:
        self._write_field(index, SWAP_INFO_OFF, bytes([(image << 4) | swap_type]))

    def write_swap_size(self, index: int, size: int) -> None:
        self._write_field(index, SWAP_SIZE_OFF, struct.pack("<I", size))

    def status_entry(self, index: int, entry: int) -> int:
        return self.read(index, self.status_off + entry * WRITE_SIZE, 1)[0]

    def write_status(self, index: int, entry: int, state: int) -> None:
        unit = bytes([state]) + bytes([ERASED]) * (WRITE_SIZE - 1)
        self.program(index, self.status_off + entry * WRITE_SIZE, unit)

    @property
    def status_entries(self) -> int:
        return self.max_sectors * STATUS_STATE_COUNT

    def scramble_trailer(self, index: int) -> None:
        """``swap_scramble_trailer_sectors()``: erase the sectors holding the trailer."""
        n = self.trailer_sectors * SECTOR
        self.erase(index, self.slot_size - n, n)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

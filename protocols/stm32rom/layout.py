"""Where the version record goes, and which erase units an install erases.

Paged parts (F1: 1 or 2 KiB pages) keep the record at the start of the last
page: one page is the smallest erase unit, so a fixed place costs one page and
is found with one read (and an install erases the page only when its first
word is not erased: see ``Stm32RomDriver._record_place``).

Sectored parts (F2/F4: 16, 16, 16, 16, 64, then 128 KiB sectors) would lose a
whole 128 KiB sector to a fixed place, and erase it at every install. There
the record sits in the last :data:`~protocols.stm32rom.record.SIZE` bytes of
the sector the image ends in, or of the next sector when the image leaves no
room: an install erases only the sectors the image needs (that next sector
too only if its last bytes are not blank already), and the driver finds the
record by reading the end of each sector (12 reads on a 1 MiB part).
Devices flashed by a driver before this layout have the record at the start
of the last sector; it is still read (:func:`legacy_slot`) and overwritten
with zeros by the next install.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from protocols.stm32rom import record
from protocols.stm32rom.parts import FLASH_BASE, Part

Units = Sequence[tuple[int, int]]  # (address, size) of every erase unit, in order


def capacity(part: Part, units: Units) -> int:
    """The largest image that fits with its record."""
    if not part.family.sectored:
        return units[-1][0] - FLASH_BASE
    end = units[-1][0] + units[-1][1]
    return end - record.SIZE - FLASH_BASE


def record_slot(part: Part, units: Units, size: int) -> int:
    """The record's address for an image of ``size`` bytes at FLASH_BASE."""
    if not part.family.sectored:
        return units[-1][0]
    image_end = FLASH_BASE + size
    last = image_units(units, size)[-1]
    a, s = units[last]
    if a + s - image_end >= record.SIZE:
        return a + s - record.SIZE
    if last + 1 >= len(units):
        raise ValueError(f"an image of {size} bytes leaves no room for its version record")
    a, s = units[last + 1]
    return a + s - record.SIZE


def image_units(units: Units, size: int) -> list[int]:
    """Indexes of the units an image of ``size`` bytes at FLASH_BASE overlaps."""
    end = FLASH_BASE + max(size, 1)
    return [i for i, (a, s) in enumerate(units) if a < end and a + s > FLASH_BASE]


def slot_outside_image(part: Part, units: Units, size: int) -> bool:
    """Whether a sectored part puts the record of ``size`` bytes beyond the image's units."""
    if not part.family.sectored:
        return False
    slot = record_slot(part, units, size)
    return not any(a <= slot < a + s for a, s in (units[i] for i in image_units(units, size)))


def erase_units(part: Part, units: Units, size: int, blank: Container[int] = ()) -> list[int]:
    """Units an install of ``size`` bytes erases: the image's and its record's, in order.

    A record slot outside the image's units that reads blank (``blank``) is
    programmed as it is: its unit (on F2/F4 it may hold the application's data, on
    F1 it is the record page) is not erased.
    """
    slot = record_slot(part, units, size)
    wanted = set(image_units(units, size))
    if slot not in blank:
        wanted |= {i for i, (a, s) in enumerate(units) if a <= slot < a + s}
    return sorted(wanted)


def candidate_slots(part: Part, units: Units) -> list[int]:
    """Every address a record of this layout may be at, in the order to look."""
    if not part.family.sectored:
        return [units[-1][0]]
    return [a + s - record.SIZE for a, s in units]


def legacy_slot(part: Part, units: Units) -> int | None:
    """Where drivers before this layout kept the record (sectored parts only)."""
    return units[-1][0] if part.family.sectored else None


__all__ = [
    "candidate_slots",
    "capacity",
    "erase_units",
    "image_units",
    "legacy_slot",
    "record_slot",
    "slot_outside_image",
]

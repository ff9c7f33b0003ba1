"""Where the version record goes and what an install erases (protocols/stm32rom/layout.py)."""

from __future__ import annotations

import pytest

from protocols.stm32rom import layout
from protocols.stm32rom.parts import PARTS

F407 = PARTS[0x413]
F103 = PARTS[0x410]
F4_UNITS = F407.sectors(1024)
F1_UNITS = F103.sectors(128)


@pytest.mark.parametrize(
    ("size", "slot", "erased"),
    [
        (1, 0x0800_3FA0, [0]),
        (16_000, 0x0800_3FA0, [0]),
        (16 * 1024 - 96, 0x0800_3FA0, [0]),  # exactly room for the record
        (16 * 1024 - 95, 0x0800_7FA0, [0, 1]),  # no room: the next sector's end
        (16 * 1024, 0x0800_7FA0, [0, 1]),
        (70_000, 0x0801_FFA0, [0, 1, 2, 3, 4]),
        (1024 * 1024 - 96, 0x080F_FFA0, list(range(12))),
    ],
)
def test_f4_record_follows_the_image_in_its_last_sector(
    size: int, slot: int, erased: list[int]
) -> None:
    assert layout.record_slot(F407, F4_UNITS, size) == slot
    assert layout.erase_units(F407, F4_UNITS, size) == erased
    # Where the next sector's last bytes are blank they are programmed without an erase.
    outside = layout.slot_outside_image(F407, F4_UNITS, size)
    assert outside == (erased != layout.image_units(F4_UNITS, size))
    if outside:
        assert layout.erase_units(F407, F4_UNITS, size, {slot}) == erased[:-1]


def test_f4_capacity_is_the_flash_less_one_record_and_no_more_fits() -> None:
    assert layout.capacity(F407, F4_UNITS) == 1024 * 1024 - 96
    with pytest.raises(ValueError, match="no room"):
        layout.record_slot(F407, F4_UNITS, 1024 * 1024 - 95)
    assert layout.candidate_slots(F407, F4_UNITS)[:2] == [0x0800_3FA0, 0x0800_7FA0]
    assert layout.legacy_slot(F407, F4_UNITS) == 0x080E_0000


def test_f1_keeps_the_record_in_the_last_page() -> None:
    assert layout.capacity(F103, F1_UNITS) == 127 * 1024
    assert layout.record_slot(F103, F1_UNITS, 3000) == 0x0801_FC00
    assert layout.erase_units(F103, F1_UNITS, 3000) == [0, 1, 2, 127]
    assert layout.erase_units(F103, F1_UNITS, 3000, {0x0801_FC00}) == [0, 1, 2]  # blank
    assert layout.candidate_slots(F103, F1_UNITS) == [0x0801_FC00]
    assert layout.legacy_slot(F103, F1_UNITS) is None
    assert not layout.slot_outside_image(F103, F1_UNITS, 3000)

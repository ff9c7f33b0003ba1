"""MCUboot at reset: decide the swap from the trailers, validate, swap or revert, boot.

The decision follows MCUboot's swap-type table at the level the outside can see:

=====================================  ===========  ==========================================
trailers                               swap type    what happens
=====================================  ===========  ==========================================
secondary magic, image_ok unset        TEST         swap; the new image boots once on trial
secondary magic, image_ok set          PERM         swap; the new image is permanent
primary magic, copy_done, no image_ok  REVERT       the trial was not confirmed: swap back
anything else                          NONE         boot the primary slot
=====================================  ===========  ==========================================

An image whose header magic or SHA256 TLV is wrong is never booted: a bad
secondary is erased instead of swapped in, a bad primary leaves the device in
the bootloader with nothing to run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocols.mcuboot.errors import ImageError
from protocols.mcuboot.image import McubootImage, parse_image
from simulators.mcu.mcuboot.flash import PRIMARY, SECONDARY, SECTOR, SlotFlash


class SwapType(enum.Enum):
    NONE = "none"  # nothing to do: boot the primary slot
    TEST = "test"  # swap in the secondary image for one trial boot
    PERM = "perm"  # swap in the secondary image for good
    REVERT = "revert"  # the trial image was not confirmed: swap the old one back


def swap_type(flash: SlotFlash) -> SwapType:
    if flash.magic_ok(SECONDARY):
        return SwapType.PERM if flash.image_ok(SECONDARY) else SwapType.TEST
    if flash.magic_ok(PRIMARY) and flash.copy_done(PRIMARY) and not flash.image_ok(PRIMARY):
        return SwapType.REVERT
    return SwapType.NONE


def slot_image(flash: SlotFlash, slot: int, *, check_hash: bool = False) -> McubootImage | None:
    """The image a slot holds, or None if its header (or, with check_hash, hash) is bad."""
    try:
        return parse_image(flash.read(slot, 0, flash.max_image), check_hash=check_hash)
    except ImageError:
        return None


def used_sectors(flash: SlotFlash) -> int:
    """Sectors a swap moves: those the larger of the two images occupies."""
    sizes = [img.total_size for s in (PRIMARY, SECONDARY) if (img := slot_image(flash, s))]
    return -(-max(sizes, default=0) // SECTOR)


def _swap_contents(flash: SlotFlash) -> None:
    a = flash.read(PRIMARY, 0, flash.max_image)
    b = flash.read(SECONDARY, 0, flash.max_image)
    flash.write(PRIMARY, 0, b)
    flash.write(SECONDARY, 0, a)


@dataclass(frozen=True, slots=True)
class BootResult:
    swap: SwapType
    sectors_moved: int
    image: McubootImage | None  # what runs now; None: no bootable image
    log: tuple[str, ...]


def boot(flash: SlotFlash) -> BootResult:
    """Run MCUboot once: returns what it did and the image it started."""
    log: list[str] = []
    kind = swap_type(flash)
    moved = 0
    if kind in (SwapType.TEST, SwapType.PERM):
        if slot_image(flash, SECONDARY, check_hash=True) is None:
            log.append("E: Image in the secondary slot is not valid!")
            flash.erase(SECONDARY, 0, SECTOR)
            flash.clear_trailer(SECONDARY)
            kind = SwapType.NONE
        else:
            moved = used_sectors(flash)
            _swap_contents(flash)
            flash.set_trailer(PRIMARY, magic=True, image_ok=kind is SwapType.PERM, copy_done=True)
            flash.clear_trailer(SECONDARY)
            log.append(f"I: Swap type: {kind.value}")
    elif kind is SwapType.REVERT:
        moved = used_sectors(flash)
        _swap_contents(flash)
        flash.set_trailer(PRIMARY, magic=True, image_ok=True, copy_done=True)
        flash.clear_trailer(SECONDARY)
        log.append("I: Swap type: revert")
    image = slot_image(flash, PRIMARY, check_hash=True)
    if image is None or not image.bootable:
        log.append("E: Unable to find bootable image")
        return BootResult(kind, moved, None, tuple(log))
    log.append(f"I: Bootloader chainload address offset: 0x0 (image {image.version})")
    return BootResult(kind, moved, image, tuple(log))

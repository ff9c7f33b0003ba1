"""MCUboot at reset: swap-using-move with a resumable status area, validation, boot.

Sources are in ``mcu-tools/mcuboot``; docs/bootloaders-mcuboot.md cites each rule.

**Swap type** (``boot_swap_type_multi()``, ``bootutil_public.c``), per image:

=========================================  ===========  ======================================
trailers                                   swap type    what happens
=========================================  ===========  ======================================
secondary magic, image_ok unset            TEST         swap; the new image boots on trial
secondary magic, image_ok set              PERM         swap; the new image is permanent
primary magic, copy_done, no image_ok      REVERT       the trial was not confirmed: swap back
anything else                              NONE         boot the primary slot
=========================================  ===========  ======================================

A TEST or PERM image that does not validate (hash, signature: :mod:`.validate`) is
erased and the swap type becomes FAIL (``boot_validate_slot()``, ``loader.c``).

**Swap-using-move** (``swap_move.c``): with ``n`` sectors to swap, the primary
image first moves up one sector, top sector first (``boot_move_sector_up``); then
for each sector ``i`` the new image's sector goes down into the primary slot and
the old image's (moved) sector into the secondary (``boot_swap_sectors``, two
states). After every step the bootloader programs one status entry in the primary
slot's trailer; at the next reset ``swap_read_status()`` finds the last entry and
the swap resumes from the step after it. Killing the simulator between any two
flash operations is a power cut: the next start resumes.

:func:`boot_steps` is a generator that performs one flash operation per step so
that the device (:mod:`.device`) can spread a swap over time; :func:`boot` runs it
to the end.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from protocols.mcuboot.errors import ImageError
from protocols.mcuboot.image import McubootImage, parse_image
from simulators.mcu.mcuboot.flash import (
    COPY_DONE_OFF,
    IMAGE_OK_OFF,
    PRIMARY,
    SECONDARY,
    SECTOR,
    SlotFlash,
    area,
)
from simulators.mcu.mcuboot.validate import TrustedKey, validate


class SwapType(enum.IntEnum):
    """``BOOT_SWAP_TYPE_*`` (bootutil_public.h); the values are what ``swap_info`` stores."""

    NONE = 1  # nothing to do: boot the primary slot
    TEST = 2  # swap in the secondary image for one trial boot
    PERM = 3  # swap in the secondary image for good
    REVERT = 4  # the trial image was not confirmed: swap the old one back
    FAIL = 5  # the secondary image did not validate; it was erased


class Op(enum.IntEnum):
    MOVE = 1  # BOOT_STATUS_OP_MOVE: move the primary image up one sector
    SWAP = 2  # BOOT_STATUS_OP_SWAP: exchange sectors between the slots


@dataclass
class Status:
    """``struct boot_status``: the next step of a swap (``idx`` and ``state`` from 1)."""

    op: Op = Op.MOVE
    idx: int = 1
    state: int = 1
    swap_type: SwapType = SwapType.NONE
    swap_size: int = 0
    from_primary: bool = False  # BOOT_STATUS_SOURCE_PRIMARY_SLOT

    @property
    def is_reset(self) -> bool:
        return self.op is Op.MOVE and self.idx == 1 and self.state == 1


def swap_type(flash: SlotFlash, image: int = 0) -> SwapType:
    pri, sec = area(image, PRIMARY), area(image, SECONDARY)
    if flash.magic_ok(sec):
        return SwapType.PERM if flash.image_ok(sec) else SwapType.TEST
    if (
        flash.magic_ok(pri)
        and flash.flag(pri, IMAGE_OK_OFF) == "unset"
        and flash.flag(pri, COPY_DONE_OFF) == "set"
    ):
        return SwapType.REVERT
    return SwapType.NONE


def slot_image(flash: SlotFlash, index: int, *, check_hash: bool = False) -> McubootImage | None:
    """The image a flash area holds, or None if its header (or, with check_hash, hash) is bad."""
    try:
        return parse_image(flash.read(index, 0, flash.max_image), check_hash=check_hash)
    except ImageError:
        return None


def valid_image(
    flash: SlotFlash, index: int, keys: tuple[TrustedKey, ...] = ()
) -> McubootImage | None:
    return validate(flash.read(index, 0, flash.max_image), keys)


def read_status(flash: SlotFlash, image: int) -> Status:
    """``swap_read_status()`` for swap-move: the step to resume at, or a reset status."""
    pri, sec = area(image, PRIMARY), area(image, SECONDARY)
    bs = Status()
    source = (
        flash.magic_ok(pri)
        and flash.flag(pri, COPY_DONE_OFF) == "unset"
        and not flash.magic_ok(sec)
    )
    if not source:
        return bs
    bs.from_primary = True
    found = -1
    for i in range(flash.status_entries, 0, -1):  # swap_read_status_bytes()
        if flash.status_entry(pri, i - 1) != 0xFF:
            found = i
            break
    moves = flash.max_sectors  # BOOT_MAX_IMG_SECTORS * BOOT_STATUS_MOVE_STATE_COUNT
    if found == -1:
        pass
    elif found < moves:
        bs.op, bs.idx, bs.state = Op.MOVE, found + 1, 1
    else:
        bs.op, bs.idx, bs.state = Op.SWAP, (found - moves) // 2 + 1, (found - moves) % 2 + 1
    bs.swap_type = SwapType(flash.swap_info(pri))
    bs.swap_size = flash.swap_size(pri)
    return bs


@dataclass
class BootResult:
    swaps: list[SwapType] = field(default_factory=list)  # per image
    sectors_moved: int = 0
    image: McubootImage | None = None  # image 0, what runs now; None: nothing bootable
    images: list[McubootImage | None] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def swap(self) -> SwapType:
        return self.swaps[0] if self.swaps else SwapType.NONE


def _entry(flash: SlotFlash, bs: Status) -> int:
    """``boot_status_internal_off()`` in entries."""
    if bs.op is Op.MOVE:
        return bs.idx - 1
    return flash.max_sectors + (bs.idx - 1) * 2 + (bs.state - 1)


def _status_init(flash: SlotFlash, image: int, bs: Status) -> Iterator[None]:
    """``swap_status_init()`` on the primary slot."""
    pri, sec = area(image, PRIMARY), area(image, SECONDARY)
    if bs.swap_type is not SwapType.NONE:
        flash.write_swap_info(pri, bs.swap_type, image)
    if flash.image_ok(sec):
        flash.write_image_ok(pri)
    flash.write_swap_size(pri, bs.swap_size)
    flash.write_magic(pri)
    yield


def _copy(flash: SlotFlash, src: int, src_off: int, dst: int, dst_off: int) -> Iterator[None]:
    data = flash.read(src, src_off, SECTOR)
    flash.erase(dst, dst_off, SECTOR)
    yield  # a cut here leaves the destination erased: the step is redone
    flash.program(dst, dst_off, data)


def _swap_run(
    flash: SlotFlash, image: int, bs: Status, result: BootResult
) -> Generator[None, None, bool]:
    """``swap_run()`` of swap_move.c, one flash operation per step; False if there is
    no room for the swap (nothing was changed)."""
    pri, sec = area(image, PRIMARY), area(image, SECONDARY)
    last_idx = max(1, -(-bs.swap_size // SECTOR))  # find_last_idx()
    first_trailer_idx = flash.max_sectors - flash.trailer_sectors
    if bs.is_reset and last_idx >= first_trailer_idx:
        result.log.append("W: Not enough free space to run swap upgrade")
        return False
    revert_start = bs.swap_type is SwapType.REVERT and bs.op is Op.MOVE and bs.idx == 1
    if revert_start and flash.magic(sec) == "unset":  # fixup_revert()
        flash.scramble_trailer(sec)
        yield
        flash.write_image_ok(sec)
        flash.write_swap_size(sec, bs.swap_size)
        flash.write_magic(sec)
        yield
    if bs.op is Op.MOVE:
        for idx in range(last_idx, 0, -1):
            if idx > last_idx - bs.idx + 1:
                continue
            if bs.idx == 1:
                if not bs.from_primary:
                    flash.scramble_trailer(pri)
                    yield
                    yield from _status_init(flash, image, bs)
                flash.scramble_trailer(sec)
                yield
            yield from _copy(flash, pri, (idx - 1) * SECTOR, pri, idx * SECTOR)
            flash.write_status(pri, _entry(flash, bs), bs.state)
            bs.idx += 1
            result.sectors_moved += 1
            yield
        bs.idx = 1
    bs.op = Op.SWAP
    for idx in range(1, last_idx + 1):
        if idx < bs.idx:
            continue
        if bs.state == 1:
            yield from _copy(flash, sec, (idx - 1) * SECTOR, pri, (idx - 1) * SECTOR)
            flash.write_status(pri, _entry(flash, bs), bs.state)
            bs.state = 2
            yield
        if bs.state == 2:
            yield from _copy(flash, pri, idx * SECTOR, sec, (idx - 1) * SECTOR)
            flash.write_status(pri, _entry(flash, bs), bs.state)
            bs.idx += 1
            bs.state = 1
            yield
    return True


def _finish(flash: SlotFlash, image: int, kind: SwapType) -> None:
    """``boot_perform_update()`` / ``boot_complete_partial_swap()`` after the swap."""
    pri = area(image, PRIMARY)
    if kind in (SwapType.REVERT, SwapType.PERM) and not flash.image_ok(pri):
        flash.write_image_ok(pri)  # swap_set_image_ok()
    if kind in (SwapType.TEST, SwapType.PERM, SwapType.REVERT):
        flash.write_copy_done(pri)  # swap_set_copy_done()


def _image_steps(
    flash: SlotFlash, image: int, keys: tuple[TrustedKey, ...], result: BootResult
) -> Iterator[None]:
    """``boot_prepare_image_for_update()`` and the swap for one image."""
    pri, sec = area(image, PRIMARY), area(image, SECONDARY)
    bs = read_status(flash, image)
    if not bs.is_reset:
        result.log.append(f"I: Image {image}: resuming an interrupted swap ({bs.swap_type.name})")
        kind = bs.swap_type
        yield from _swap_run(flash, image, bs, result)
        _finish(flash, image, kind)
        result.swaps.append(kind)
        return
    if bs.swap_type is SwapType.NONE:
        kind = swap_type(flash, image)
    else:
        kind = bs.swap_type  # the status area was set up, no step written yet
    if kind in (SwapType.TEST, SwapType.PERM) and valid_image(flash, sec, keys) is None:
        result.log.append(f"E: Image {image}: Image in the secondary slot is not valid!")
        flash.erase(sec)  # boot_scramble_slot(): never retried at every boot
        yield
        kind = SwapType.FAIL
    if kind in (SwapType.TEST, SwapType.PERM, SwapType.REVERT):
        sizes = [img.total_size for a in (pri, sec) if (img := slot_image(flash, a))]
        bs.swap_size = max(sizes, default=0)
        bs.swap_type = kind
        result.log.append(f"I: Image {image}: Swap type: {kind.name.lower()}")
        if not (yield from _swap_run(flash, image, bs, result)):
            result.swaps.append(SwapType.NONE)
            return
        _finish(flash, image, kind)
    result.swaps.append(kind)


def boot_steps(
    flash: SlotFlash, keys: tuple[TrustedKey, ...] = (), result: BootResult | None = None
) -> Iterator[None]:
    """MCUboot from reset to the jump, one flash operation per step; fills ``result``."""
    result = BootResult() if result is None else result
    for image in range(flash.images):
        yield from _image_steps(flash, image, keys, result)
    # MCUBOOT_VALIDATE_PRIMARY_SLOT: every image must validate before anything boots.
    result.images = [valid_image(flash, area(i, PRIMARY), keys) for i in range(flash.images)]
    first = result.images[0]
    if any(img is None or not img.bootable for img in result.images):
        result.log.append("E: Unable to find bootable image")
        result.image = None
    else:
        assert first is not None
        result.log.append(f"I: Bootloader chainload address offset: 0x0 (image {first.version})")
        result.image = first


def boot(flash: SlotFlash, keys: tuple[TrustedKey, ...] = ()) -> BootResult:
    """Run MCUboot once, to the end: what it did and the image it started."""
    result = BootResult()
    for _ in boot_steps(flash, keys, result):
        pass
    return result

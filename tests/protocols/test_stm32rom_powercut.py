"""Power cuts at each flash operation of an stm32-rom install (the simulator's ``cut=N``).

After every cut the part is powered again and identified: it may claim no version,
the old one or the new one, but a version it claims must have its whole image in
flash (the SHA-256 of the bytes there equals the record's). Then an install of the
new image completes. The simulator tears the operation the power fails in: half a
program, or an erase that left each bit as it was or erased.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from protocols import registry
from protocols.driver import DeviceFacts, DriverError, DriverOptions, Image, InstallResult
from protocols.stm32rom import codec
from simulators.mcu.stm32rom.chip import CUT_EXIT, Faults, SimConfigError
from tests.sim_harness import SimProcess, stm32_raw

UID = "0102030405060708090a0b0c"
SIM = ("--bootloader", "stm32-rom", "--baud", "0", "--flash-scale", "0.02", "--uid", UID,
       "--boot0", "high")  # fmt: skip
OPTIONS = DriverOptions(baud=0)
#: More flash operations than any case below has: a sweep that reaches it is a bug.
MAX_CUTS = 80


def _image(size: int, version: str) -> Image:
    data = random.Random(version).randbytes(size)
    return Image(data, version, hashlib.sha256(data).hexdigest())


async def _install(port: str, image: Image) -> InstallResult:
    async with registry.open_driver(port, registry.get("stm32-rom"), OPTIONS) as driver:
        return await driver.install(image)


async def _identify(port: str) -> DeviceFacts:
    async with registry.open_driver(port, registry.get("stm32-rom"), OPTIONS) as driver:
        return await driver.identify()


OLD = _image(700, "1.0.0")
NEW_SMALL = _image(1500, "2.0.0")
NEW_SECTOR = _image(16 * 1024, "2.0.0")


async def _f1_update(port: str) -> None:
    assert (await _install(port, OLD)).ok


async def _f1_foreign(port: str) -> None:
    # Bytes that are not the driver's behind an erased first word of the record's page.
    stm32_raw(port, codec.write_memory(0x0801_FC00 + 8, b"DATA" * 4))


async def _f4_outside(port: str) -> None:
    # Data at the end of sector 1, where a 16 KiB image's record goes.
    stm32_raw(port, codec.write_memory(0x0800_7FA0 + 8, b"DATA" * 4))
    assert (await _install(port, OLD)).ok  # its record: the end of sector 0


Prepare = Callable[[str], Awaitable[None]]
CASES: dict[str, tuple[str, Prepare, Image, Sequence[int] | None]] = {
    # F1: the old record's page erased first, 2 image pages, 6 blocks, the record.
    "f1-update": ("stm32f103", _f1_update, NEW_SMALL, None),
    # F1: the record page taken for blank, found not to be, erased and written again.
    "f1-foreign-record-page": ("stm32f103", _f1_foreign, NEW_SMALL, None),
    # F4: sector 0 (with the old record), 64 blocks, then the record at the end of sector 1
    # over data: erased and written again. The cuts around the ends of the install.
    "f4-record-past-the-image": (
        "stm32f407",
        _f4_outside,
        NEW_SECTOR,
        (1, 2, 3, 34, 65, 66, 67, 68, 69, 70),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_no_cut_leaves_a_version_claimed_without_its_whole_image(
    tmp_path: Path, case: str
) -> None:
    model, prepare, new, cuts = CASES[case]
    template = tmp_path / "template"
    sim = SimProcess(template, (*SIM, "--model", model)).start()
    try:
        await prepare(sim.port)
    finally:
        sim.stop()
    versions = {OLD.version: OLD.sha256, new.version: new.sha256}
    completed_at = None
    seen: set[str | None] = set()
    for n in cuts or range(1, MAX_CUTS + 1):
        state = tmp_path / f"cut-{n}"
        shutil.copytree(template, state)
        sim = SimProcess(state, (*SIM, "--model", model))
        try:
            sim.start(["--fault", f"cut={n}"])
            failed: DriverError | None = None
            try:
                result = await _install(sim.port, new)
            except DriverError as exc:
                failed = exc
            if failed is not None:
                assert failed.code in ("MCU_DISCONNECTED", "MCU_TIMEOUT"), failed
                assert sim.wait_exit(10) == CUT_EXIT, sim.stderr()
            else:
                assert result.ok
                completed_at = n
            sim.start()  # power again, BOOT0 still high
            facts = await _identify(sim.port)
            claimed = facts.installed_version
            seen.add(claimed)
            if claimed is not None:
                assert claimed in versions, claimed
                slot = facts.slots[0]
                assert slot.sha256 == versions[claimed]
                flash = (state / "flash.bin").read_bytes()
                assert slot.size is not None
                whole = hashlib.sha256(flash[: slot.size]).hexdigest()
                assert whole == slot.sha256, f"cut {n}: {claimed} claimed over other bytes"
            again = await _install(sim.port, new)
            assert again.ok and again.facts.installed_version == new.version
        finally:
            sim.stop()
        if completed_at is not None:
            break
    if cuts is None:
        assert completed_at is not None, f"still cutting after {MAX_CUTS} operations"
        assert completed_at > 8  # the sweep crossed every step, not an early exit
    assert None in seen  # some cut fell between the erase and the new record
    if cuts is None or completed_at is not None:
        assert new.version in seen  # the last cuts were after the record


@pytest.mark.parametrize("spec", ["cut=0", "cut=x", "cut="])
def test_a_bad_cut_is_refused_in_one_line(spec: str) -> None:
    with pytest.raises(SimConfigError, match="cut=N"):
        Faults.parse([spec])

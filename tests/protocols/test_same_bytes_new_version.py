"""Same bytes, new version (issue 23.1): after an install the MCU reports the version
installed, or the install fails clearly; no driver claims a version the MCU does not say.

Promoting a release candidate re-publishes byte-identical image bytes under a new
version. mcugw kept the old version (the client took the image as installed; the
MCU resumed a staged copy under its old BEGIN record); stm32-rom rewrites its
version record; an MCUboot image carries its version in its header, so the same
bytes under another version are refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from protocols import registry
from protocols.driver import (
    DriverError,
    DriverOptions,
    Image,
    Outcome,
    Progress,
    SlotState,
    Step,
)
from protocols.mcugw.constants import SlotState as WireSlot
from protocols.mcugw.packets import BeginRequest, BeginResponse
from protocols.mcugw.plan import FlashStep, plan_flash
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.models import MODELS
from simulators.mcu.trailer import RecordKind
from tests.mcuboot_tools import signed
from tests.protocols.test_session_after_cut import _core, _session
from tests.sim_harness import running_sim

DATA = random.Random(23).randbytes(40_000)


def _image(version: str, data: bytes = DATA) -> Image:
    return Image(data, version, hashlib.sha256(data).hexdigest())


async def test_mcugw_same_bytes_new_version_is_written_again_under_the_new_version(
    tmp_path: Path,
) -> None:
    spec = registry.get("mcugw")
    options = DriverOptions(baud=0, confirm_timeout_s=10.0)
    with running_sim(tmp_path / "mcu", "--baud", "0", "--flash-scale", "0.05") as sim:
        async with registry.open_driver(sim.port, spec, options) as driver:
            first = await driver.install(_image("2.0.0"))
            assert first.facts.installed_version == "2.0.0"
            second = await driver.install(_image("2.1.0"))
            after = await driver.identify()
    assert second.outcome is Outcome.CONFIRMED
    assert second.running_version == "2.1.0"
    assert after.installed_version == "2.1.0"
    # Written into the other slot: the same bytes under 2.0.0 stay the fallback.
    by_version = {s.version: s for s in after.slots}
    assert by_version["2.1.0"].running and by_version["2.1.0"].state is SlotState.CONFIRMED
    assert by_version["2.0.0"].state is SlotState.CONFIRMED
    assert by_version["2.0.0"].sha256 == by_version["2.1.0"].sha256


@pytest.mark.parametrize("impl", ["python", "c"])
async def test_a_staged_copy_under_another_version_is_not_resumed(
    tmp_path: Path, impl: str
) -> None:
    # 3.0.0-rc1 cut mid-transfer, then the same bytes published as 3.0.0: BEGIN must not
    # resume the copy staged under the rc1 record, or the MCU ends up reporting rc1.
    spec = registry.get("mcugw")
    options = DriverOptions(baud=0, confirm_timeout_s=10.0)
    data = random.Random(31).randbytes(96 * 1024)
    args = ("--impl", impl, "--baud", "0", "--flash-scale", "0.05")
    with running_sim(tmp_path / "mcu", *args) as sim:
        written = asyncio.Event()

        def progress(event: Progress) -> None:
            if event.step is Step.WRITE and event.done >= 64 * 1024:
                written.set()

        async with registry.open_driver(sim.port, spec, options) as driver:
            task = asyncio.create_task(driver.install(_image("3.0.0-rc1", data), progress))
            async with asyncio.timeout(30):
                await written.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with registry.open_driver(sim.port, spec, options) as driver:
            staged = await driver.identify()
            assert (staged.slots[1].version, staged.slots[1].state) in {
                ("3.0.0-rc1", SlotState.WRITING),
                ("3.0.0-rc1", SlotState.COMPLETE),  # the cut came after the last DATA
            }
            result = await driver.install(_image("3.0.0", data))
            after = await driver.identify()
    assert result.resumed_from == 0  # started over under the 3.0.0 record
    assert result.running_version == "3.0.0"
    assert after.installed_version == "3.0.0"


def test_plan_takes_a_slot_as_installed_only_under_the_same_version() -> None:
    core = _core()
    slot = core.trailers[0].status()
    info = SimpleNamespace(running_slot=0, slots=core.slot_infos())
    plan = functools.partial(plan_flash, info, slot.size, slot.sha256, None)
    assert plan("1.0.0").step is FlashStep.INSTALLED
    assert plan("1.0.1").step is FlashStep.WRITE


async def test_mcu_begin_resumes_only_the_same_version() -> None:
    # A staged copy of these bytes under 2.1.0-rc1 (say a cut promotion run), then
    # BEGIN for the same bytes as 2.1.0: the MCU starts over under the new BEGIN record.
    core = McuCore(MODELS["vmcu-l0"], Flash(MODELS["vmcu-l0"]), b"\x0c\x07")
    core.install_initial_app("1.0.0")
    data = random.Random(5).randbytes(3 * core.model.sector_size)
    digest = hashlib.sha256(data).digest()
    core.trailers[1].append(RecordKind.BEGIN, len(data), digest, "2.1.0-rc1")
    core.trailers[1].append(RecordKind.CHECKPOINT, core.model.sector_size)
    assert core.trailers[1].status().state is WireSlot.WRITING
    core.power_on(0.0, stay=True)
    async with _session(core) as session:
        await session.connect()
        same = await session.request(
            BeginRequest(size=len(data), sha256=digest, version="2.1.0-rc1"), 5.0
        )
        assert isinstance(same, BeginResponse) and same.resume_offset == core.model.sector_size
        other = await session.request(
            BeginRequest(size=len(data), sha256=digest, version="2.1.0"), 5.0
        )
        assert isinstance(other, BeginResponse) and other.resume_offset == 0
        result = await session.flash(data, "2.1.0")
    assert result.outcome == "confirmed" and result.running_version == "2.1.0"
    assert core.trailers[1].status().version == "2.1.0"


async def test_stm32_same_bytes_new_version_rewrites_the_version_record(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    args = ("--bootloader", "stm32-rom", "--baud", "0", "--flash-scale", "0.05")
    enter = DriverOptions(baud=0, extra={"enter_command": "bootloader\n"})  # the app's way in
    data = DATA[:20_000]
    with running_sim(tmp_path / "mcu", *args, "--boot0", "high") as sim:
        async with registry.open_driver(sim.port, spec, enter) as driver:
            await driver.install(_image("2.0.0", data))
        async with registry.open_driver(sim.port, spec, enter) as driver:
            result = await driver.install(_image("2.1.0", data))
        async with registry.open_driver(sim.port, spec, enter) as driver:
            after = await driver.identify()
    assert result.facts.installed_version == "2.1.0"
    assert after.installed_version == "2.1.0"  # read back from the MCU's own record


async def test_mcuboot_same_bytes_under_another_version_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    spec = registry.get("mcuboot")
    args = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1", "--uid", "0a1b2c3d",
            "--fault", "commands=full")  # fmt: skip
    options = DriverOptions(baud=0, confirm_timeout_s=5.0)
    image = signed(tmp_path, "2.0.0")
    with running_sim(tmp_path / "mcu", *args) as sim:
        async with registry.open_driver(sim.port, spec, options) as driver:
            first = await driver.install(image)
            assert first.facts.installed_version == "2.0.0"
            with pytest.raises(DriverError) as err:
                await driver.install(dataclasses.replace(image, version="2.1.0"))
            after = await driver.identify()
    assert err.value.code == "IMAGE_REJECTED"
    assert "header says 2.0.0" in err.value.message
    assert after.installed_version == "2.0.0"


async def test_mcuboot_a_version_its_header_cannot_hold_is_refused(tmp_path: Path) -> None:
    # MCUboot reports its header's version; a package version it cannot hold
    # (a pre-release) would be claimed while the MCU says another.
    spec = registry.get("mcuboot")
    args = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1", "--uid", "0a1b2c3d",
            "--fault", "commands=full")  # fmt: skip
    options = DriverOptions(baud=0, confirm_timeout_s=5.0)
    image = signed(tmp_path, "2.1.0")
    with running_sim(tmp_path / "mcu", *args) as sim:
        async with registry.open_driver(sim.port, spec, options) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(dataclasses.replace(image, version="2.1.0-rc1"))
            after = await driver.identify()
    assert err.value.code == "IMAGE_REJECTED"
    assert after.installed_version == "1.0.0"

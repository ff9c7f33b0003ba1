"""The real session after a power cut: it finishes what the cut interrupted (§10.4),
and connects through a noisy link (§6)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import Mode, SlotState
from protocols.mcugw.packets import ResetRequest
from protocols.mcugw.session import BootloaderSession
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import LinkFaults, McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS
from simulators.mcu.options import SimOptions, parse_faults
from simulators.mcu.trailer import RecordKind

MODEL = MODELS["vmcu-l0"]
IMAGE = random.Random(9).randbytes(3 * MODEL.sector_size + 10)


def _activate(core: McuCore, image: bytes) -> None:
    """The state a cut right after ACTIVATE leaves: slot 1 verified and on trial."""
    trailer = core.trailers[1]
    for sec in range(0, len(image), MODEL.sector_size):
        core.flash.erase_sector(trailer.image_base + sec)
    core.flash.program(trailer.image_base, image + b"\xff" * (-len(image) % MODEL.write_size))
    trailer.append(RecordKind.BEGIN, len(image), hashlib.sha256(image).digest(), "2.0.0")
    trailer.append(RecordKind.COMPLETE)
    trailer.append(RecordKind.TRIAL, 2)


@asynccontextmanager
async def _session(core: McuCore) -> AsyncIterator[BootloaderSession]:
    transport = MemoryTransport()
    driver = McuDriver(core, 0, transport.deliver, LinkFaults(core.opts.link))
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        yield BootloaderSession(transport, 115200)
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task


def _core(options: SimOptions | None = None) -> McuCore:
    core = McuCore(MODEL, Flash(MODEL), b"\x0c\x07", options)
    core.install_initial_app("1.0.0")
    return core


def _old_image_intact(core: McuCore) -> None:
    st = core.trailers[0].status()
    assert st.state is SlotState.CONFIRMED and st.version == "1.0.0"
    data = core.flash.read(core.trailers[0].image_base, st.size)
    assert hashlib.sha256(data).digest() == st.sha256


async def test_reflash_of_an_activated_image_finishes_its_trial_without_writing() -> None:
    core = _core()
    _activate(core, IMAGE)
    core.power_on(0.0, stay=True)  # power came back in the bootloader (RESET STAY)
    erases = core.flash.erase_count
    async with _session(core) as session:
        result = await session.flash(IMAGE, "2.0.0")
    assert result.outcome == "confirmed" and result.slot == 1
    assert result.running_version == "2.0.0"
    assert core.flash.erase_count == erases  # nothing rewritten
    _old_image_intact(core)


async def test_reflash_during_the_trial_run_waits_for_the_confirm() -> None:
    # The app takes a while to confirm: a reset into the bootloader meanwhile
    # would have spent a trial attempt and made the session write slot 0.
    core = _core(replace(SimOptions(), confirm_delay_s=0.4))
    _activate(core, IMAGE)
    async with _session(core) as session:
        core.power_on(asyncio.get_running_loop().time())  # trial boot, app running
        assert core.trailers[1].status().state is SlotState.TRIAL
        info = await session.connect()
        assert info.mode is Mode.BOOTLOADER
        assert info.slots[1].state is SlotState.CONFIRMED
        erases = core.flash.erase_count
        result = await session.flash(IMAGE, "2.0.0")
    assert result.outcome == "confirmed" and result.slot == 1
    assert core.flash.erase_count == erases
    _old_image_intact(core)


async def test_flashing_the_running_image_again_writes_nothing() -> None:
    core = _core()
    core.power_on(0.0)
    async with _session(core) as session:
        first = await session.flash(IMAGE, "2.0.0")
        assert first.outcome == "confirmed"
    erases = core.flash.erase_count
    async with _session(core) as session:
        again = await session.flash(IMAGE, "2.0.0")
    assert again.outcome == "confirmed" and again.slot == first.slot
    assert core.flash.erase_count == erases
    _old_image_intact(core)  # the previous image is still there to go back to


@pytest.mark.parametrize("seed", range(3))
async def test_connect_and_flash_through_5e_3_byte_errors(seed: int) -> None:
    core = _core(parse_faults(["corrupt=0.005", f"seed={seed}"]))
    core.power_on(0.0)
    async with _session(core) as session:
        async with asyncio.timeout(60):
            result = await session.flash(IMAGE, "2.0.0")
    assert result.outcome == "confirmed"
    assert session.stats.garbled > 0  # the noise did hit


class _LosesFirstReset(MemoryTransport):
    """A link that loses the first RESET request on its way to the MCU."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def write(self, data: bytes) -> None:
        codec = Codec()
        codec.receive_data(data)
        while (ev := codec.next_event()) is not None:
            reset = isinstance(ev, PacketReceived) and isinstance(ev.message, ResetRequest)
            if reset and not self.lost:
                self.lost += 1
                return
        await super().write(data)


async def test_connect_resends_a_reset_that_was_lost() -> None:
    core = _core()
    core.power_on(0.0)
    transport = _LosesFirstReset()
    driver = McuDriver(core, 0, transport.deliver, LinkFaults(core.opts.link))
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        session = BootloaderSession(transport, 115200)
        async with asyncio.timeout(10):
            info = await session.connect()
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task
    assert transport.lost == 1
    assert info.mode is Mode.BOOTLOADER  # the HELLO probe saw APP and sent RESET again

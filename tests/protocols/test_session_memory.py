"""The async session against the virtual MCU through the in-memory link."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from protocols.mcugw.session import BootloaderSession
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import LinkFaults, McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS
from simulators.mcu.options import parse_faults


@dataclass
class Rig:
    core: McuCore
    driver: McuDriver
    session: BootloaderSession


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    faults: list[str] = getattr(request, "param", [])
    model = MODELS["vmcu-l0"]
    opts = parse_faults(faults)
    core = McuCore(model, Flash(model), b"\xaa\xbb", opts, baud=115200)
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    transport = MemoryTransport()
    driver = McuDriver(core, 0, transport.deliver, LinkFaults(opts.link))
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        yield Rig(core, driver, BootloaderSession(transport, 115200))
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task


async def test_set_baud_switches_both_sides(rig: Rig) -> None:
    await rig.session.connect()
    assert await rig.session.set_baud(460800) is True
    assert rig.core.baud == 460800
    assert rig.session.link.baud == 460800
    image = random.Random(1).randbytes(5000)
    result = await rig.session.flash(image, "2.0.0")
    assert result.outcome == "confirmed"


@pytest.mark.parametrize("rig", [["baud-fail"]], indirect=True)
async def test_set_baud_falls_back_when_new_rate_fails(rig: Rig) -> None:
    await rig.session.connect()
    assert await rig.session.set_baud(921600) is False
    assert rig.session.link.baud == 115200
    assert rig.core.baud == 115200  # the MCU reverted on its own
    image = random.Random(2).randbytes(3000)
    result = await rig.session.flash(image, "2.0.0")
    assert result.sha256 == hashlib.sha256(image).hexdigest()


async def test_unsupported_baud_is_refused_cleanly(rig: Rig) -> None:
    await rig.session.connect()
    assert await rig.session.set_baud(12345) is False
    assert rig.core.baud == 115200


@pytest.mark.parametrize("rig", [["mute=VERIFY"]], indirect=True)
async def test_silent_mcu_times_out_with_a_clear_error(rig: Rig) -> None:
    from protocols.errors import DeviceTimeout

    with pytest.raises(DeviceTimeout, match="no answer to VERIFY"):
        await rig.session.flash(random.Random(3).randbytes(2000), "2.0.0")


@pytest.mark.parametrize("rig", [["refuse=BEGIN"]], indirect=True)
async def test_refusal_names_the_command_and_status(rig: Rig) -> None:
    from protocols.mcugw.errors import DeviceRejected

    with pytest.raises(DeviceRejected, match="BEGIN refused by MCU: REFUSED"):
        await rig.session.flash(random.Random(4).randbytes(2000), "2.0.0")

"""The mcugw driver behind the seam, against `mcu-gateway sim` on a real pty."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from protocols import registry
from protocols.driver import (
    Capability,
    DriverError,
    DriverOptions,
    Image,
    NoAnswer,
    Outcome,
    Phase,
    Progress,
    Safety,
    SlotState,
    Step,
)
from tests.sim_harness import running_sim

FAST = ("--baud", "0", "--flash-scale", "0.05")
OPTIONS = DriverOptions(baud=0, confirm_timeout_s=10.0)


def _image(size: int, version: str, seed: int = 3) -> Image:
    data = random.Random(seed).randbytes(size)
    return Image(data, version, hashlib.sha256(data).hexdigest())


async def test_identify_install_confirm(tmp_path: Path) -> None:
    spec = registry.get("mcugw")
    image = _image(60_000, "2.0.0")
    events: list[Progress] = []
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            before = await driver.identify()
            assert before.driver == "mcugw"
            assert before.installed_version == "1.0.0"
            assert before.safety is Safety.AB_ROLLBACK
            assert {Capability.TRIAL_BOOT, Capability.ROLLBACK, Capability.RESUME} <= (
                before.capabilities
            )
            assert len(before.slots) == 2
            result = await driver.install(image, events.append)
    assert result.outcome is Outcome.CONFIRMED
    assert result.ok
    assert result.bytes == len(image.data)
    assert result.facts.installed_version == "2.0.0"
    assert result.facts.installed_sha256 == image.sha256
    running = [s for s in result.facts.slots if s.running]
    assert running[0].state is SlotState.CONFIRMED
    steps = [e.step for e in events]
    assert steps[0] is Step.CONNECT
    assert Step.WRITE in steps
    assert Step.CHECK in steps
    assert steps[-1] is Step.BOOT
    assert steps[-1].phase is Phase.REBOOTING
    writes = [e.done for e in events if e.step is Step.WRITE]
    assert writes == sorted(writes)
    assert writes[-1] == len(image.data)


async def test_rollback_is_an_outcome_not_an_error(tmp_path: Path) -> None:
    spec = registry.get("mcugw")
    with running_sim(tmp_path / "mcu", *FAST, "--fault", "crash-on-boot=2.0.0") as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(_image(20_000, "2.0.0"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.facts.installed_version == "1.0.0"


async def test_image_too_large_is_a_coded_error_before_writing(tmp_path: Path) -> None:
    spec = registry.get("mcugw")
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            facts = await driver.identify()
            with pytest.raises(DriverError) as err:
                await driver.install(_image(facts.capacity + 1, "2.0.0"))
            assert err.value.code == "IMAGE_REJECTED"
            after = await driver.identify()
    assert after.installed_version == "1.0.0"
    assert [s.state for s in after.slots] == [s.state for s in facts.slots]


async def test_detect_names_every_driver_tried_on_a_silent_port() -> None:
    order = registry.probe_order(["mcugw"])
    with pytest.raises(NoAnswer, match=r"no bootloader answered on loop:// \(mcugw: "):
        await registry.detect("loop://", DriverOptions(baud=115200), order)


async def test_reboot_and_abort_return_to_the_app(tmp_path: Path) -> None:
    spec = registry.get("mcugw")
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            facts = await driver.reboot()
            assert not facts.in_bootloader
            facts = await driver.abort()
            assert not facts.in_bootloader
            assert facts.installed_version == "1.0.0"

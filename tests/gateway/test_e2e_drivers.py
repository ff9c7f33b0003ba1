"""End to end over all three bootloader drivers: one gateway, a twin change per MCU.

Our protocol (A/B, trial boot), the STM32 ROM bootloader (single slot, read-back)
and MCUboot over SMP (swap with revert), each a simulator process on a pty, each
updated by the real gateway from its own twin through the real SDKs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from simulators.hub.server import HubServer
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    reported,
    running_lab,
    set_desired,
    statuses,
    wait_current,
    wait_hub,
)

MODELS = ["vmcu-f4", "stm32f103", "vmcu_nrf52840"]
EXPECT = {  # sim model -> (driver, safety)
    "vmcu-f4": ("mcugw", "ab-rollback"),
    "stm32f103": ("stm32-rom", "single-slot"),
    "vmcu_nrf52840": ("mcuboot", "ab-rollback"),
}


async def test_every_driver_updates_from_a_twin_change(tmp_path: Path) -> None:
    async with running_lab(tmp_path, MODELS, sim_args=("--baud", "921600")) as run:
        lab = run.lab

        def all_reported(s: HubServer) -> bool:
            agents = list(run.gateway.agents.values())
            return len(agents) == 3 and all("mcu" in reported(s, a.device_id) for a in agents)

        await wait_hub(lab, all_reported, within=90)
        ids = device_ids(run)
        assert lab.hub is not None
        for sim, device_id in zip(lab.sims, ids, strict=True):
            mcu = reported(lab.hub.call(lambda s: s), device_id)["mcu"]
            assert (mcu["bootloader"], mcu["safety"]) == EXPECT[sim.model]
            if mcu["safety"] == "ab-rollback":
                assert mcu["capabilities"]["rollback"] is True
            else:
                assert "rollback" not in mcu["capabilities"]
                assert mcu["capabilities"]["readback"] is True

        releases = [lab.release("2.0.0", sim.model, size=48 * 1024) for sim in lab.sims]
        for device_id, rel in zip(ids, releases, strict=True):
            await asyncio.to_thread(set_desired, lab, device_id, rel.desired())
        for device_id in ids:
            fw = await wait_current(lab, device_id, "2.0.0", within=120)
            assert fw.get("error") is None
            assert fw.get("pendingFwVersion") is None
            seen = statuses(lab, device_id)
            assert seen[-1] == "current"
            assert "applying" in seen
        # The installed version comes from each MCU itself (the stm32 version record,
        # MCUboot's image header, our slot table), not only from the journal.
        for sim, device_id in zip(lab.sims, ids, strict=True):
            agent = next(a for a in run.gateway.agents.values() if a.device_id == device_id)
            assert agent.facts.installed_version == "2.0.0", sim.model


async def test_a_package_for_another_part_is_refused_before_writing(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ["stm32f103"], sim_args=("--baud", "921600")) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
        (device_id,) = device_ids(run)
        wrong = lab.release("2.0.0", "stm32f407", size=4096)  # an F4 package for an F1 board

        def failed(s: HubServer) -> Any:
            fw = firmware_of(s, device_id)
            return fw.get("fwUpdateStatus") == "error" and fw["error"]

        await asyncio.to_thread(set_desired, lab, device_id, wrong.desired())
        error = await wait_hub(lab, failed, within=60)
        assert error["code"] == "INCOMPATIBLE_MODEL"
        assert error["phase"] == "verifying"
        assert "applying" not in statuses(lab, device_id)

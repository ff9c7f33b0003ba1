"""STM32 ROM (single slot) powered off mid-install, after its version record was erased
(issue 17.6): the twin no longer claims the old version; it says what is known."""

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
    wait_current,
    wait_hub,
)


async def test_stm32_off_after_the_erase_is_not_reported_with_the_old_version(
    tmp_path: Path,
) -> None:
    async with running_lab(tmp_path, ["stm32f103"], sim_args=("--baud", "115200")) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
        (device_id,) = device_ids(run)
        first = lab.release("1.0.0", "stm32f103", size=4096)
        await asyncio.to_thread(set_desired, lab, device_id, first.desired())
        await wait_current(lab, device_id, "1.0.0", within=60)
        rel = lab.release("2.0.0", "stm32f103", size=48 * 1024)
        await asyncio.to_thread(set_desired, lab, device_id, rel.desired())

        def writing(s: HubServer) -> bool:
            fw = firmware_of(s, device_id)
            return fw.get("pendingFwVersion") == "2.0.0" and fw.get("bytesWritten", 0) >= 8192

        await wait_hub(lab, writing, within=60)
        await lab.sims[0].kill()  # power off: the record was erased before the first write

        def failed(s: HubServer) -> Any:
            fw = firmware_of(s, device_id)
            return fw.get("fwUpdateStatus") == "error" and fw

        fw = await wait_hub(lab, failed, within=60)
        assert fw.get("currentFwVersion") is None, fw  # not 1.0.0
        assert "erased" in fw["error"]["message"]
        assert lab.hub is not None
        mcu = reported(lab.hub.call(lambda s: s), device_id)["mcu"]
        assert mcu["slots"][0]["state"] == "invalid"
        assert mcu["slots"][0]["version"] == ""

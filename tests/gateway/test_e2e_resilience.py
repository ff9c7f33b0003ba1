"""End to end: rollback, hub outages, superseded updates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    running_lab,
    set_desired,
    statuses,
    wait_current,
    wait_hub,
)

SLOW = ("--baud", "230400")  # long enough transfers to act in the middle of one


async def _online(run: Any, n: int) -> list[str]:
    await wait_hub(
        run.lab,
        lambda s: (
            len(run.gateway.agents) == n
            and all(s.hub.is_connected(a.device_id) for a in run.gateway.agents.values())
        ),
        within=60,
    )
    return device_ids(run)


def _applying_past(device_id: str, fraction: float, size: int) -> Any:
    def check(s: Any) -> bool:
        fw = firmware_of(s, device_id)
        return bool(
            fw.get("fwUpdateStatus") == "applying" and fw.get("bytesWritten", 0) > fraction * size
        )

    return check


async def test_app_that_crashes_on_boot_is_rolled_back(tmp_path: Path) -> None:
    sim_args = ("--baud", "921600", "--fault", "crash-on-boot=2.0.0")
    async with running_lab(tmp_path, ["vmcu-l0"], sim_args=sim_args) as run:
        (device,) = await _online(run, 1)
        rel = run.lab.release("2.0.0", "vmcu-l0")
        await asyncio.to_thread(set_desired, run.lab, device, rel.desired())
        await wait_hub(
            run.lab, lambda s: firmware_of(s, device).get("fwUpdateStatus") == "rolledback", 60
        )
        fw = firmware_of(run.lab.hub.call(lambda s: s), device)  # type: ignore[union-attr]
        assert fw["currentFwVersion"] == "1.0.0"
        assert fw["error"]["code"] == "ROLLED_BACK"
        assert "rebooting" in statuses(run.lab, device)


async def test_hub_drops_connections_mid_update(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ["vmcu-f4"], sim_args=SLOW) as run:
        (device,) = await _online(run, 1)
        rel = run.lab.release("2.0.0", "vmcu-f4", size=160 * 1024)
        await asyncio.to_thread(set_desired, run.lab, device, rel.desired())
        await wait_hub(run.lab, _applying_past(device, 0.2, 160 * 1024), within=60)
        assert run.lab.hub is not None
        dropped = await asyncio.to_thread(run.lab.hub.drop_connections)
        assert dropped >= 2  # the MCU's device and the gateway's own
        await wait_current(run.lab, device, "2.0.0")
        agent = next(iter(run.gateway.agents.values()))
        assert agent.link.reconnects >= 1


async def test_desired_change_during_update_installs_the_newer(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ["vmcu-f4"], sim_args=SLOW) as run:
        (device,) = await _online(run, 1)
        first = run.lab.release("2.0.0", "vmcu-f4", size=160 * 1024)
        second = run.lab.release("3.0.0", "vmcu-f4", size=48 * 1024)
        await asyncio.to_thread(set_desired, run.lab, device, first.desired())
        await wait_hub(run.lab, _applying_past(device, 0.1, 160 * 1024), within=60)
        await asyncio.to_thread(set_desired, run.lab, device, second.desired())
        await wait_current(run.lab, device, "3.0.0")
        agent = next(iter(run.gateway.agents.values()))
        versions = {s.version for s in agent.facts.slots}
        assert "2.0.0" not in versions  # the superseded image never became active

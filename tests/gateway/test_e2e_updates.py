"""End to end: real SDK clients against the hub emulator over TLS, HTTPS downloads, sims on ptys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simulators.hub.server import HubServer
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    reported,
    running_lab,
    set_desired,
    statuses,
    wait_hub,
)
from tests.sim_harness import cli_json

ORDER = ["downloading", "verifying", "applying", "rebooting", "current"]


def _in_order(seen: list[str], expected: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == want for s in it) for want in expected)


async def test_three_mcus_online_then_two_updated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_lab(tmp_path, ["vmcu-f4", "vmcu-l0", "vmcu-h7"]) as run:
        lab = run.lab
        await wait_hub(
            lab,
            lambda s: (
                len(run.gateway.agents) == 3
                and all(s.hub.is_connected(a.device_id) for a in run.gateway.agents.values())
                and all("mcu" in reported(s, a.device_id) for a in run.gateway.agents.values())
            ),
            within=60,
        )
        ids = device_ids(run)
        registry = lab.registry()
        for sim, device_id in zip(lab.sims, ids, strict=True):
            device = await asyncio.to_thread(registry.get_device, device_id)
            assert device.device_id == device_id
            twin = await asyncio.to_thread(registry.get_twin, device_id)
            mcu = twin.properties.reported["mcu"]
            assert mcu["uid"] == sim.uid
            assert mcu["model"] == sim.model
            assert mcu["gatewayDeviceId"] == "lab-gateway"
        await wait_hub(
            lab, lambda s: len(reported(s, "lab-gateway").get("mcus", {})) == 3, within=30
        )
        gw_twin = await asyncio.to_thread(registry.get_twin, "lab-gateway")
        assert set(gw_twin.properties.reported["mcus"]) == set(ids)

        releases = [lab.release("2.0.0", sim.model) for sim in lab.sims[:2]]
        for rel, device_id in zip(releases, ids, strict=False):
            await asyncio.to_thread(set_desired, lab, device_id, rel.desired())

        def done(s: HubServer) -> bool:
            return all(
                firmware_of(s, d).get("fwUpdateStatus") == "current"
                and firmware_of(s, d).get("currentFwVersion") == "2.0.0"
                for d in ids[:2]
            )

        await wait_hub(lab, done, within=90)
        for device_id in ids[:2]:
            assert _in_order(statuses(lab, device_id), ORDER), statuses(lab, device_id)
        untouched = statuses(lab, ids[2])
        assert set(untouched) <= {"current"}
        await run.halt()  # frees the ports for `info`

        for i, sim in enumerate(lab.sims):
            code, info, err = await asyncio.to_thread(
                cli_json, capsys, "info", "--port", str(sim.link), "--baud", "921600"
            )
            assert code == 0, err
            active = info["slots"][info["running_slot"]]
            if i < 2:
                assert info["running_version"] == "2.0.0"
                assert active["sha256"] == releases[i].payload_sha256
            else:
                assert info["running_version"] == "1.0.0"

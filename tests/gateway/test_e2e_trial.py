"""An MCUboot app that never confirms, through the real gateway: never ``current`` (issue 17.2).

The MCUboot simulator's ``no-confirm`` fault leaves the new image running on
trial (MCUboot's *test* image), so its ``image state`` shows it active but not
confirmed. Before the fix, the retry saw the desired version running and
reported ``current``; a fleet ring counts that as success. Now every attempt
ends in ``APP_NOT_CONFIRMED``, and a gateway restart does not settle it either.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.lab import Lab
from simulators.hub.server import HubServer
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    launch,
    next_host,
    set_desired,
    statuses,
    wait_hub,
)


def _config(lab: Lab) -> Path:
    # Short confirm wait; retry once, soon.
    text = lab.config_text(retry_attempts=2, retry_base_s=0.5)
    text = text.replace("confirm_timeout_s = 10", "confirm_timeout_s = 2")
    path = lab.root / "gateway.toml"
    path.write_text(text)
    return path


async def test_an_mcuboot_app_that_never_confirms_is_never_reported_current(
    tmp_path: Path,
) -> None:
    sim_args = ("--baud", "921600", "--fault", "no-confirm")
    async with Lab(tmp_path, next_host(), ["vmcu_nrf52840"], sim_args=sim_args) as lab:
        config = _config(lab)
        run = launch(lab, config)
        try:
            await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
            (device_id,) = device_ids(run)
            rel = lab.release("2.0.0", "vmcu_nrf52840", size=16 * 1024)
            await asyncio.to_thread(set_desired, lab, device_id, rel.desired())

            def gave_up(s: HubServer) -> bool:
                fw = firmware_of(s, device_id)
                return "gave up" in str(fw.get("fwUpdateSubstatus"))

            await wait_hub(lab, gave_up, within=120)
            assert lab.hub is not None
            fw = firmware_of(lab.hub.call(lambda s: s), device_id)
            assert fw["fwUpdateStatus"] == "error"
            assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
            seen = statuses(lab, device_id)
            assert "current" not in seen[1:], seen  # [0]: 1.0.0 at start-up
            agent = next(iter(run.gateway.agents.values()))
            running = [s for s in agent.facts.slots if s.running]
            assert [(s.version, s.state.value) for s in running] == [("2.0.0", "trial")]
        finally:
            await run.halt()
        # A restart reads the trial from the MCU and the journal: still not current.
        assert lab.hub is not None
        before = len(lab.hub.reported_patches(device_id))
        run = launch(lab, config)
        try:

            def ended_again(s: HubServer) -> bool:
                patches = list(s.hub.reported_log.get(device_id, ()))[before:]
                return any("gave up" in str((p.get("firmware") or {}).get(
                    "fwUpdateSubstatus")) for p in patches)  # fmt: skip

            await wait_hub(lab, ended_again, within=120)
            after = [
                (p.get("firmware") or {}).get("fwUpdateStatus")
                for p in lab.hub.reported_patches(device_id)[before:]
            ]
            assert "current" not in after, after
        finally:
            await run.halt()

"""End to end: install windows, MCUs plugged in later, and the registry identity mode."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from gateway.lab import Lab, SimHandle
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    launch,
    next_host,
    reported,
    running_lab,
    set_desired,
    wait_current,
    wait_hub,
)


async def test_update_waits_for_its_install_window(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    start = (now + dt.timedelta(hours=3)).strftime("%H:%M")
    end = (now + dt.timedelta(hours=4)).strftime("%H:%M")
    async with running_lab(tmp_path, ["vmcu-l0"]) as run:
        await wait_hub(run.lab, lambda s: len(run.gateway.agents) == 1, within=60)
        (device,) = device_ids(run)
        rel = run.lab.release("2.0.0", "vmcu-l0")
        window = {"start": start, "end": end, "tz": "UTC"}
        await asyncio.to_thread(set_desired, run.lab, device, rel.desired(installWindow=window))

        def waiting(s: Any) -> bool:
            return "install window" in str(firmware_of(s, device).get("fwUpdateSubstatus", ""))

        await wait_hub(run.lab, waiting, within=30)
        agent = next(iter(run.gateway.agents.values()))
        assert [s.version for s in agent.facts.slots if s.version] == ["1.0.0"]
        # Opening the window now (a new desired state) lets it through.
        around = dt.datetime.now(dt.UTC)
        open_now = {
            "start": (around - dt.timedelta(hours=1)).strftime("%H:%M"),
            "end": (around + dt.timedelta(hours=1)).strftime("%H:%M"),
            "tz": "UTC",
        }
        await asyncio.to_thread(set_desired, run.lab, device, rel.desired(installWindow=open_now))
        await wait_current(run.lab, device, "2.0.0")


async def test_mcu_plugged_in_later_comes_online(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ["vmcu-f4"]) as run:
        await wait_hub(run.lab, lambda s: len(run.gateway.agents) == 1, within=60)
        late = SimHandle(
            index=7,
            link=tmp_path / "ports" / "mcu-007",
            state=tmp_path / "sims" / "mcu-007",
            model="vmcu-h7",
            uid="0badc0ffee0000000000beef",
            args=["--baud", "921600"],
        )
        await late.start()
        try:
            await wait_hub(
                run.lab,
                lambda s: any(
                    a.uid == late.uid and s.hub.is_connected(a.device_id)
                    for a in run.gateway.agents.values()
                ),
                within=60,
            )
            await wait_hub(
                run.lab, lambda s: len(reported(s, "lab-gateway").get("mcus", {})) == 2, within=30
            )
        finally:
            await late.stop()


async def test_registry_mode_creates_devices_and_updates(tmp_path: Path) -> None:
    async with Lab(tmp_path, next_host(), ["vmcu-l0"]) as lab:
        secret = tmp_path / "service.cs"
        secret.touch(mode=0o600)
        secret.write_text(lab.facts.service_connection_string)
        text = lab.config_text()
        dps = text[text.index('mode = "dps"') : text.index("connect_timeout_s")]
        text = text.replace(dps, f'mode = "registry"\nca_file = "{lab.facts.ca_path}"\n'
                                 f'service_connection_string_file = "{secret}"\n')  # fmt: skip
        (tmp_path / "gateway.toml").write_text(text)
        run = launch(lab, tmp_path / "gateway.toml")
        try:
            await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
            (device,) = device_ids(run)
            await wait_hub(lab, lambda s: s.hub.is_connected(device), within=60)
            rel = lab.release("2.0.0", "vmcu-l0")
            await asyncio.to_thread(set_desired, lab, device, rel.desired())
            await wait_current(lab, device, "2.0.0")
        finally:
            await run.halt()

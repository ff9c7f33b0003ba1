"""Same bytes, new version, through the real gateway (issue 23.1): promoting a release
candidate unchanged must leave the MCU itself reporting the new version."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.gateway.e2e import device_ids, running_lab, set_desired, wait_current, wait_hub


async def test_the_same_image_under_a_new_version_ends_with_the_mcu_reporting_it(
    tmp_path: Path,
) -> None:
    async with running_lab(tmp_path, ["vmcu-f4"]) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
        (device_id,) = device_ids(run)
        body = random.Random(23).randbytes(32 * 1024)
        for version in ("2.1.0-rc.1", "2.1.0"):
            rel = lab.release(version, "vmcu-f4", body=body, size=len(body))
            await asyncio.to_thread(set_desired, lab, device_id, rel.desired())
            fw = await wait_current(lab, device_id, version, within=90)
            assert fw.get("error") is None
        # The MCU itself, read again, names 2.1.0 (not only the twin).
        agent = next(iter(run.gateway.agents.values()))
        async with agent.session() as driver:
            facts = await driver.identify()
        assert facts.installed_version == "2.1.0"
        running = [s for s in facts.slots if s.running]
        assert [(s.version, s.state.value) for s in running] == [("2.1.0", "confirmed")]

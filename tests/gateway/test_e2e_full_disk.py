"""The gateway with its state directory on a really small file system (issue 17.1).

A mounted 3 MB tmpfs holds the journal and the download cache. Filled up, an
update ends in a specific twin error (``STORAGE_FULL`` with the free and needed
bytes), the MCU's twin never sticks at ``downloading``, and once space is back
the update completes by itself, without a restart. Then the same after a
restart on the full disk: the journal opens, the agent reports, and recovers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.lab import Lab
from simulators.hub.server import HubServer
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    launch,
    next_host,
    set_desired,
    wait_current,
    wait_hub,
)
from tests.smallfs import fill, small_fs

KIB = 1024


def _storage_full(device_id: str, version: str) -> Any:
    def check(s: HubServer) -> Any:
        fw = firmware_of(s, device_id)
        error = fw.get("error") or {}
        failed = fw.get("fwUpdateStatus") == "error" and error.get("code") == "STORAGE_FULL"
        return failed and version in str(fw.get("fwUpdateSubstatus")) and fw

    return check


async def test_a_full_state_disk_is_a_clear_error_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    with small_fs(tmp_path / "fs", "3m") as fs:
        async with Lab(tmp_path / "lab", next_host(), ["vmcu-f4"]) as lab:
            text = lab.config_text(state=fs / "gateway", retry_base_s=0.5, retry_max_s=1.0)
            config = lab.root / "gateway.toml"
            config.write_text(text)
            run = launch(lab, config)
            try:
                await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
                (device_id,) = device_ids(run)
                await wait_current(lab, device_id, "1.0.0", within=60)
                # Room for the journal, not for the package: refused before downloading.
                filler = fill(fs, leave=256 * KIB)
                rel = lab.release("2.0.0", "vmcu-f4", size=1024 * KIB)
                await asyncio.to_thread(set_desired, lab, device_id, rel.desired())
                fw = await wait_hub(lab, _storage_full(device_id, "2.0.0"), within=60)
                message = fw["error"]["message"]
                assert " bytes free " in message and f"{rel.size} needed" in message, message
                assert fw["currentFwVersion"] == "1.0.0"
                assert "gave up" not in fw["fwUpdateSubstatus"]
                assert not list((fs / "gateway" / "cache" / "tmp").glob("*.part"))
                filler.unlink()  # space is back: the retry gets through by itself
                await wait_current(lab, device_id, "2.0.0", within=90)
            finally:
                await run.halt()
            # A restart on a disk so full that not even the journal can be written.
            filler = fill(fs, leave=0)
            run = launch(lab, config)
            try:
                await wait_hub(lab, lambda s: len(run.gateway.agents) == 1, within=60)
                rel3 = lab.release("3.0.0", "vmcu-f4", size=64 * KIB)
                await asyncio.to_thread(set_desired, lab, device_id, rel3.desired())
                fw = await wait_hub(lab, _storage_full(device_id, "3.0.0"), within=60)
                assert "bytes free" in fw["error"]["message"]
                assert fw["currentFwVersion"] == "2.0.0"
                filler.unlink()
                await wait_current(lab, device_id, "3.0.0", within=90)
            finally:
                await run.halt()

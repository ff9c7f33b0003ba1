"""End to end: the gateway killed or stopped mid-flash, and an MCU unplugged mid-flash."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from gateway.journal import Journal, Outcome
from gateway.lab import Lab
from gateway.naming import device_id_for
from tests.gateway.e2e import (
    device_ids,
    firmware_of,
    next_host,
    running_lab,
    set_desired,
    wait_current,
    wait_hub,
)

SIZE = 192 * 1024


async def _gateway_process(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()


async def _update_until(lab: Lab, device: str, fraction: float) -> None:
    """Start an update of SIZE bytes and wait until that much is written."""
    await wait_hub(lab, lambda s: s.hub.is_connected(device), within=60)
    rel = lab.release("2.0.0", "vmcu-f4", size=SIZE)
    await asyncio.to_thread(set_desired, lab, device, rel.desired())

    def written(s: Any) -> bool:
        return bool(firmware_of(s, device).get("bytesWritten", 0) >= fraction * SIZE)

    await wait_hub(lab, written, within=60)


async def test_gateway_killed_mid_flash_resumes_after_restart(tmp_path: Path) -> None:
    async with Lab(tmp_path, next_host(), ["vmcu-f4"], sim_args=("--baud", "230400")) as lab:
        config = lab.write_config()
        sim = lab.sims[0]
        device = device_id_for(bytes.fromhex(sim.uid), sim.model)
        proc = await _gateway_process(config)
        try:
            await _update_until(lab, device, 0.6)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            proc = await _gateway_process(config)
            fw = await wait_current(lab, device, "2.0.0")
            assert fw["resumedFrom"] > 0.5 * fw["bytesWritten"]  # less than half re-sent
        finally:
            await _stop(proc)
        journal = Journal.open(tmp_path / "gateway")
        try:
            last = journal.last_outcome(sim.uid)
            assert last is not None
            assert last.outcome is Outcome.CURRENT
            assert last.attempts == 2  # the interrupted run and its resumption
            assert journal.update_in_progress(sim.uid) is None
        finally:
            journal.close()


async def test_sigterm_parks_the_update_and_a_restart_finishes_it(tmp_path: Path) -> None:
    async with Lab(tmp_path, next_host(), ["vmcu-f4"], sim_args=("--baud", "230400")) as lab:
        config = lab.write_config()
        sim = lab.sims[0]
        device = device_id_for(bytes.fromhex(sim.uid), sim.model)
        proc = await _gateway_process(config)
        try:
            await _update_until(lab, device, 0.3)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
            journal = Journal.open(tmp_path / "gateway")
            try:
                parked = journal.update_in_progress(sim.uid)
                assert parked is not None  # parked, not abandoned
                assert parked.target_version == "2.0.0"
            finally:
                journal.close()
            proc = await _gateway_process(config)
            fw = await wait_current(lab, device, "2.0.0")
            assert fw["resumedFrom"] > 0
        finally:
            await _stop(proc)


async def test_unplugged_mcu_fails_alone_and_recovers(tmp_path: Path) -> None:
    models = ["vmcu-f4", "vmcu-f4", "vmcu-l0"]
    async with running_lab(tmp_path, models, sim_args=("--baud", "230400")) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: len(run.gateway.agents) == 3, within=60)
        ids = device_ids(run)
        rels = [lab.release("2.0.0", m, size=128 * 1024) for m in models]
        for rel, device in zip(rels, ids, strict=True):
            await asyncio.to_thread(set_desired, lab, device, rel.desired())
        victim = ids[1]

        def victim_applying(s: Any) -> bool:
            fw = firmware_of(s, victim)
            return bool(fw.get("fwUpdateStatus") == "applying" and fw.get("bytesWritten", 0) > 0)

        await wait_hub(lab, victim_applying, within=60)
        await lab.sims[1].kill()
        await wait_hub(lab, lambda s: firmware_of(s, victim).get("fwUpdateStatus") == "error", 60)
        error = firmware_of(lab.hub.call(lambda s: s), victim)["error"]  # type: ignore[union-attr]
        assert error["phase"] == "applying"
        assert error["code"].startswith("MCU_")
        for other in (ids[0], ids[2]):
            await wait_current(lab, other, "2.0.0")
        await lab.sims[1].start()  # plugged back in, on a new pty behind the same link
        await wait_current(lab, victim, "2.0.0")

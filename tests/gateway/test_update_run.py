"""UpdateRun against fakes: the statuses it walks, what it journals, what it reports."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from firmware import keys
from firmware.images import recall
from firmware.policy import TrustPolicy
from firmware.twin import parse_desired
from gateway.config import PolicySettings
from gateway.journal import Journal, Outcome, Phase
from gateway.logs import mcu_logger
from gateway.update import UpdateEnv, UpdateFailed, UpdateRun
from protocols.driver import DriverError, Step
from tests.gateway.fakes import FakeDownloader, FakeMcu, release

UID = "0a1b2c3d"


@pytest.fixture
def key() -> Any:
    return keys.generate(keys.Algorithm.ED25519)


def _run(tmp_path: Path, key: Any, mcu: FakeMcu, firmware: dict[str, Any],
         downloader: FakeDownloader, journal: Journal,
         reports: list[tuple[dict[str, Any], bool]]) -> UpdateRun:  # fmt: skip
    env = UpdateEnv(
        journal=journal,
        downloader=downloader,  # type: ignore[arg-type]
        trust=TrustPolicy((keys.PublicKey.from_key(key.public_key()),)),
        policy=PolicySettings(),
        flash_slots=asyncio.Semaphore(1),
        confirm_timeout_s=5.0,
    )

    async def report(patch: dict[str, Any], transition: bool) -> None:
        reports.append((patch, transition))

    return UpdateRun(env, uid=UID, desired=parse_desired(firmware), facts=mcu.facts(),
                     driver=mcu.open, report=report, log=mcu_logger("test", "mcu-1"))  # fmt: skip


async def test_a_run_walks_every_status_as_a_transition_and_ends_confirmed(
    tmp_path: Path, key: Any
) -> None:
    mcu, downloader = FakeMcu(), FakeDownloader(tmp_path)
    rel = release(downloader, key, "2.0.0")
    reports: list[tuple[dict[str, Any], bool]] = []
    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu(UID, device_id="mcu-1", model="vmcu-f4", port="p")
        result = await _run(tmp_path, key, mcu, rel.desired(), downloader, journal,
                            reports).run()  # fmt: skip
        assert journal.update_in_progress(UID) is not None  # the agent finishes it
    assert result.outcome is Outcome.CURRENT
    assert result.facts is not None and result.facts.slots[1].version == "2.0.0"
    transitions = [p["firmware"]["fwUpdateStatus"] for p, t in reports if t]
    assert transitions[:3] == ["downloading", "verifying", "applying"]
    assert transitions[-1] == "rebooting"
    first = reports[0][0]["firmware"]
    # A new run clears the figures and end time of the previous one...
    assert first["resumedFrom"] is None and first["lastFwUpdateEndTime"] is None
    # ...and shows where it downloads from without the URL's credentials.
    assert first["fwUpdateSubstatus"] == "downloading https://***@cdn.example/fw/2.0.0.mcufw?***"


async def test_a_resumed_run_keeps_its_first_start_time(tmp_path: Path, key: Any) -> None:
    mcu, downloader = FakeMcu(), FakeDownloader(tmp_path)
    rel = release(downloader, key, "2.0.0")
    reports: list[tuple[dict[str, Any], bool]] = []
    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu(UID, device_id="mcu-1", model="vmcu-f4", port="p")
        sha = rel.desired()["fwPackageCheckValue"]
        journal.begin_update(UID, "2.0.0", sha, rel.url, now=1_000_000.0)
        run = _run(tmp_path, key, mcu, rel.desired(), downloader, journal, reports)
        await run.run()
        assert journal.update_in_progress(UID).attempts == 2  # type: ignore[union-attr]
    assert run.started == "1970-01-12T13:46:40Z"
    assert reports[0][0]["firmware"]["lastFwUpdateStartTime"] == run.started


async def test_an_unplug_mid_flash_fails_in_applying_with_an_mcu_code(
    tmp_path: Path, key: Any
) -> None:
    mcu, downloader = FakeMcu(), FakeDownloader(tmp_path)
    mcu.failures = [DriverError("MCU_DISCONNECTED", "port closed", Step.WRITE)]
    rel = release(downloader, key, "2.0.0")
    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu(UID, device_id="mcu-1", model="vmcu-f4", port="p")
        run = _run(tmp_path, key, mcu, rel.desired(), downloader, journal, [])
        with pytest.raises(UpdateFailed) as exc:
            await run.run()
        assert journal.update_in_progress(UID).phase is Phase.APPLYING  # type: ignore[union-attr]
    assert (exc.value.code, exc.value.phase) == ("MCU_DISCONNECTED", "applying")


async def test_the_next_update_gets_the_image_the_gateway_flashed_as_its_delta_base(
    tmp_path: Path, key: Any
) -> None:
    mcu, downloader = FakeMcu(), FakeDownloader(tmp_path)
    first, second = release(downloader, key, "2.0.0"), release(downloader, key, "2.1.0")
    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu(UID, device_id="mcu-1", model="vmcu-f4", port="p")
        await _run(tmp_path, key, mcu, first.desired(), downloader, journal, []).run()
        journal.finish_update(UID, Outcome.CURRENT)
        await _run(tmp_path, key, mcu, second.desired(), downloader, journal, []).run()
    # The factory image was never flashed by this gateway: no base. Then 2.0.0 is.
    assert mcu.bases[0] is None
    assert mcu.bases[1] == hashlib.sha256(b"2.0.0").digest() * (4096 // 32)
    # A damaged cache copy is never used as a base.
    digest = hashlib.sha256(mcu.bases[1]).hexdigest()
    downloader.cache.path_of(digest).write_bytes(b"rot")
    assert recall(downloader.cache, digest) is None

"""An image on trial is never ``current``; the twin never claims a version the MCU does not say.

Issue 17.2 (an MCUboot app that never confirms was reported ``current`` on the
retry, and a fleet ring counted it as success) and issue 23.1 (the same bytes
under a new version: the driver said *confirmed*, the MCU kept the old version).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.config import PolicySettings
from gateway.journal import Outcome, Phase
from gateway.reconcile import on_trial, reconcile
from tests.gateway.fakes import FakeLink, FakeMcu, release
from tests.gateway.test_agent import Rig, _seed_run, fast_forward, rig

POLICY = PolicySettings(retry_attempts=3, retry_base_s=10.0, retry_max_s=20.0)


def _statuses(r: Rig) -> list[Any]:
    return [fw.get("fwUpdateStatus") for fw in r.link.firmware_reports()]


@fast_forward
async def test_an_app_that_never_confirms_ends_in_error_never_current(tmp_path: Path) -> None:
    mcu = FakeMcu("1.0.0")
    mcu.confirms = False
    async with rig(tmp_path, mcu=mcu, policy=POLICY) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
        assert "retry 2 of 3" in fw["fwUpdateSubstatus"]
        # The retries see 2.0.0 running (on trial) with 2.0.0 desired: still not current.
        fw = await r.wait_fw(within=600, fwUpdateStatus="error", nextRetryTime=None)
        assert "gave up after 3 attempt(s)" in fw["fwUpdateSubstatus"]
        assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
        await asyncio.sleep(3600)
        assert "current" not in _statuses(r)[1:], _statuses(r)  # [0]: the start-up report
        assert r.mcu.flashed == ["2.0.0"]  # the retries waited on the trial, wrote nothing
        # Power cycle: the bootloader reverts; desired unchanged, the operator retries.
        r.mcu.power_cycle()
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired(retry=1))
        await r.link.wait_for(lambda _: r.mcu.flashed == ["2.0.0", "2.0.0"], within=60)
        await r.wait_fw(within=600, fwUpdateStatus="error", nextRetryTime=None)
        assert "current" not in _statuses(r)[1:]


async def test_a_driver_claiming_confirmed_for_a_trial_image_is_not_believed(
    tmp_path: Path,
) -> None:
    mcu = FakeMcu("1.0.0")
    mcu.confirms, mcu.lies = False, True
    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_attempts=1)) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
        assert "on trial" in fw["error"]["message"]
        assert "current" not in _statuses(r)[1:]
        last = r.journal.last_outcome(r.uid)
        assert last is not None and last.outcome is Outcome.ERROR


async def test_a_version_the_mcu_does_not_report_is_never_claimed(tmp_path: Path) -> None:
    # Same bytes, new version: the device kept the old version for the image (issue 23.1).
    mcu = FakeMcu("1.0.0")
    mcu.records_version = "1.0.0"
    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_attempts=1)) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "MCU_VERSION_MISMATCH"
        assert "reports version 1.0.0" in fw["error"]["message"]
        assert fw["currentFwVersion"] == "1.0.0"
        assert "current" not in _statuses(r)[1:]


def _on_trial(mcu: FakeMcu, version: str) -> None:
    """``version`` flashed into slot 1 and running there on trial."""
    mcu.set_slot(1, version)
    mcu.slots[1] = mcu.slots[1].__class__(1, mcu.slots[1].state.TRIAL, version, 5000,
                                          mcu.slots[1].sha256, 1)  # fmt: skip
    mcu.running = 1
    mcu.confirms = False


async def test_restart_during_a_trial_that_never_confirms_does_not_report_current(
    tmp_path: Path,
) -> None:
    mcu = FakeMcu("1.0.0")
    _on_trial(mcu, "2.0.0")
    assert on_trial(mcu.facts())

    def prepare(r: Rig) -> None:
        rel = release(r.downloader, r.key, "2.0.0")
        _seed_run(r, "2.0.0", rel.desired()["fwPackageCheckValue"], Phase.REBOOTING)
        r.link.set_desired(rel.desired())

    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_attempts=1),
                   prepare=prepare) as r:  # fmt: skip
        fw = await r.wait_fw(fwUpdateStatus="error")
        first = r.link.firmware_reports()[0]
        assert first["fwUpdateStatus"] == "rebooting"
        assert first["pendingFwVersion"] == "2.0.0"
        assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
        assert "current" not in _statuses(r)
        history = r.journal.history(r.uid)
        assert [h.outcome for h in history] == [Outcome.ERROR]


async def test_restart_with_a_trial_image_and_no_run_in_the_journal(tmp_path: Path) -> None:
    mcu = FakeMcu("1.0.0")
    _on_trial(mcu, "2.0.0")

    def prepare(r: Rig) -> None:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())

    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_attempts=1),
                   prepare=prepare) as r:  # fmt: skip
        await r.wait_fw(fwUpdateStatus="error")
        first = r.link.firmware_reports()[0]
        assert first["fwUpdateStatus"] == "downloading"
        assert "on trial" in first["fwUpdateSubstatus"]
        assert "current" not in _statuses(r)


async def test_restart_with_a_trial_image_and_nothing_desired(tmp_path: Path) -> None:
    mcu = FakeMcu("1.0.0")
    _on_trial(mcu, "2.0.0")
    async with rig(tmp_path, mcu=mcu, link=FakeLink()) as r:
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "APP_NOT_CONFIRMED"
        assert fw["currentFwVersion"] == "2.0.0"
        assert r.mcu.flashed == []


def test_reconcile_never_settles_a_trial_run_as_current() -> None:
    class Run:
        target_version = "2.0.0"
        package_sha256 = "ab" * 32
        phase = Phase.REBOOTING
        started_at = 0.0

    state = reconcile(installed="2.0.0", desired=None, run=Run(), trial=True)  # type: ignore[arg-type]
    assert state.finish is Outcome.CANCELLED
    assert state.firmware["fwUpdateStatus"] == "error"
    settled = reconcile(installed="2.0.0", desired=None, run=Run())  # type: ignore[arg-type]
    assert settled.finish is Outcome.CURRENT


def test_an_mcuboot_build_number_is_the_same_version_as_its_semver_form() -> None:
    from gateway.reconcile import same_version

    assert same_version("1.2.3.4", "1.2.3+4")  # mcumgr's form, the package's form
    assert same_version("2.0.0", "2.0.0")
    assert not same_version("1.2.3.4", "1.2.4")
    assert not same_version("2.0.0", "2.0.1")
    assert not same_version("1.2.3-rc.1", "1.2.3")

"""McuAgent decisions against in-memory fakes: the twin tells the truth at every moment."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import looptime
import pytest

from firmware import keys
from firmware.errors import DownloadError
from firmware.policy import TrustPolicy
from firmware.reasons import ReasonCode
from gateway.agent import McuAgent
from gateway.config import PolicySettings
from gateway.journal import Journal, Outcome, Phase
from gateway.logs import TextFormatter
from gateway.update import UpdateEnv
from protocols.driver import DriverError, Step
from tests.gateway.fakes import FakeDownloader, FakeLink, FakeMcu, release

OLD_END = "2020-01-01T00:00:00Z"


@dataclass
class Rig:
    agent: McuAgent
    link: FakeLink
    mcu: FakeMcu
    downloader: FakeDownloader
    journal: Journal
    key: Any

    @property
    def uid(self) -> str:
        return self.mcu.uid.hex()

    async def wait_fw(self, within: float = 10.0, **fields: Any) -> dict[str, Any]:
        def matches(link: FakeLink) -> bool:
            return all(link.firmware.get(k) == v for k, v in fields.items())

        await self.link.wait_for(matches, within)
        return self.link.firmware


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    mcu: FakeMcu | None = None,
    link: FakeLink | None = None,
    policy: PolicySettings | None = None,
    prepare: Any = None,
) -> AsyncIterator[Rig]:
    mcu = mcu or FakeMcu()
    link = link or FakeLink()
    key = keys.generate(keys.Algorithm.ED25519)
    downloader = FakeDownloader(tmp_path)
    journal = Journal.open(tmp_path / "state")
    env = UpdateEnv(
        journal=journal,
        downloader=downloader,  # type: ignore[arg-type]
        trust=TrustPolicy((keys.PublicKey.from_key(key.public_key()),)),
        policy=policy or PolicySettings(),
        flash_slots=asyncio.Semaphore(2),
        confirm_timeout_s=5.0,
    )
    agent = McuAgent(
        env=env, probe=mcu.probe(), device_id=link.device_id, gateway_id="gw", link=link,
        allowed_schemes=("https",), open_driver=mcu.open, rng=random.Random(7),
    )  # fmt: skip
    r = Rig(agent, link, mcu, downloader, journal, key)
    if prepare is not None:
        prepare(r)
    await agent.start()
    try:
        yield r
    finally:
        await agent.close()
        journal.close()


def fast_forward(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on looptime's loop, where sleeps and timeouts take no real time.

    For the retry policy, whose backoff is minutes long; everything else in these tests
    is in memory, so loop time only moves when the code under test waits on purpose.
    """

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        # looptime.new_event_loop() makes a loop with the fake time already on.
        with asyncio.Runner(loop_factory=looptime.new_event_loop) as runner:
            runner.run(test(*args, **kwargs))

    return run


def _seed_run(r: Rig, version: str, sha: str, phase: Phase) -> None:
    r.journal.upsert_mcu(r.uid, device_id="mcu-1", model="vmcu-f4", port="fake-port")
    r.journal.begin_update(r.uid, version, sha, "https://cdn.example/x", now=1_000_000.0)
    r.journal.set_phase(r.uid, phase)


# ---------------------------------------------------------------- start-up reconciliation


async def test_restart_after_a_kill_during_the_trial_boot_reports_the_new_version_settled(
    tmp_path: Path,
) -> None:
    # Killed while the app was confirming 2.0.0: the MCU runs it, the journal still has
    # the run, the twin still has the trial-boot substatus and the last run's figures.
    stale = {"firmware": {"fwUpdateStatus": "rebooting", "pendingFwVersion": "2.0.0",
                          "fwUpdateSubstatus": "trial boot; waiting for the app to confirm",
                          "resumedFrom": 12345, "lastFwUpdateEndTime": OLD_END}}  # fmt: skip
    mcu = FakeMcu("1.0.0")
    probe_holder: dict[str, Any] = {}

    def prepare(r: Rig) -> None:
        rel = release(r.downloader, r.key, "2.0.0")
        probe_holder["rel"] = rel
        _seed_run(r, "2.0.0", rel.desired()["fwPackageCheckValue"], Phase.REBOOTING)
        r.link.set_desired(rel.desired())

    mcu.set_slot(1, "2.0.0")
    mcu.running = 1
    async with rig(tmp_path, mcu=mcu, link=FakeLink(reported=stale), prepare=prepare) as r:
        await r.wait_fw(currentFwVersion="2.0.0")
        first = r.link.firmware_reports()[0]
        assert first["fwUpdateStatus"] == "current"
        assert first["currentFwVersion"] == "2.0.0"
        assert first["pendingFwVersion"] is None
        assert first["resumedFrom"] is None
        assert first["lastFwUpdateEndTime"] != OLD_END
        assert first["fwUpdateSubstatus"] == "installed 2.0.0"
        assert first["lastFwUpdateStartTime"] == "1970-01-12T13:46:40Z"
        last = r.journal.last_outcome(r.uid)
        assert last is not None and last.outcome is Outcome.CURRENT
        assert r.journal.update_in_progress(r.uid) is None
        assert r.mcu.flashed == []  # nothing flashed again


async def test_restart_mid_update_never_reports_current_with_the_old_version(
    tmp_path: Path,
) -> None:
    def prepare(r: Rig) -> None:
        rel = release(r.downloader, r.key, "2.0.0")
        _seed_run(r, "2.0.0", rel.desired()["fwPackageCheckValue"], Phase.APPLYING)
        r.link.set_desired(rel.desired())

    async with rig(tmp_path, prepare=prepare) as r:
        await r.wait_fw(fwUpdateStatus="current", currentFwVersion="2.0.0")
        reports = r.link.firmware_reports()
        assert reports[0]["fwUpdateStatus"] == "applying"
        assert reports[0]["pendingFwVersion"] == "2.0.0"
        assert "resuming" in reports[0]["fwUpdateSubstatus"]
        for fw in reports:
            if fw.get("fwUpdateStatus") == "current":
                assert fw.get("currentFwVersion", "2.0.0") == "2.0.0", reports
        assert r.mcu.flashed == ["2.0.0"]


# ---------------------------------------------------------------- desired back to installed


async def test_desired_back_to_the_installed_version_clears_a_stale_error(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        rel = release(r.downloader, r.key, "8.0.0")
        r.downloader.failures[rel.url] = [
            DownloadError(ReasonCode.PACKAGE_NOT_FOUND, "HTTP 404: no package")
        ]
        r.link.set_desired(rel.desired())
        await r.wait_fw(fwUpdateStatus="error")
        r.link.set_desired(release(r.downloader, r.key, "1.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="current", error=None)
        assert fw["currentFwVersion"] == "1.0.0"
        assert fw.get("pendingFwVersion") is None  # null removes the field from the twin
        assert fw.get("error") is None
        assert r.mcu.flashed == []


async def test_desired_back_to_installed_mid_update_stops_without_reflashing(
    tmp_path: Path,
) -> None:
    mcu = FakeMcu("7.0.0")
    mcu.hold = asyncio.Event()  # the 8.0.0 flash stays in progress
    async with rig(tmp_path, mcu=mcu) as r:
        r.link.set_desired(release(r.downloader, r.key, "8.0.0").desired())
        async with asyncio.timeout(10):
            await r.mcu.flashing.wait()
        r.link.set_desired(release(r.downloader, r.key, "7.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="current", pendingFwVersion=None)
        assert fw["currentFwVersion"] == "7.0.0"
        assert r.mcu.flashed == ["8.0.0"]  # 7.0.0 was never written into the fallback slot
        assert r.mcu.version == "7.0.0"
        last = r.journal.last_outcome(r.uid)
        assert last is not None and last.outcome is Outcome.CANCELLED


# ---------------------------------------------------------------- reports off the serial path


async def test_an_update_finishes_while_the_hub_is_unreachable(tmp_path: Path) -> None:
    link = FakeLink()
    link.hub_down = True  # report_now would wait forever: transitions must only be queued
    async with rig(tmp_path, link=link) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="current", currentFwVersion="2.0.0")
        last = r.journal.last_outcome(r.uid)
        assert last is not None and last.outcome is Outcome.CURRENT
        statuses = [f.get("fwUpdateStatus") for f in r.link.firmware_reports()]
        for status in ("downloading", "verifying", "applying", "rebooting", "current"):
            assert status in statuses
        last_patch, urgent = r.link.reports[-1]
        assert last_patch["firmware"]["fwUpdateStatus"] == "current" and urgent
        assert fw["lastFwUpdateEndTime"] >= fw["lastFwUpdateStartTime"]


# ---------------------------------------------------------------- URL secrets


async def test_no_url_secret_reaches_the_twin_or_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as r:
        rel = release(r.downloader, r.key, "2.0.0")
        r.downloader.failures[rel.url] = [
            DownloadError(ReasonCode.DOWNLOAD_FAILED, f"{rel.url}: giving up after 8 attempts")
        ]
        r.link.set_desired(rel.desired(retry=0))
        await r.wait_fw(fwUpdateStatus="error")
        r.link.set_desired(rel.desired(retry=1))
        await r.wait_fw(fwUpdateStatus="current", currentFwVersion="2.0.0")
    # The log as the gateway writes it (caplog's own text skips our formatter).
    formatter = TextFormatter("%(message)s")
    log = "\n".join(formatter.format(record) for record in caplog.records)
    assert "DOWNLOAD_FAILED" in log
    shown = json.dumps([p for p, _ in r.link.reports]) + log
    assert "cdn.example/fw/2.0.0.mcufw" in shown  # the URL is shown...
    assert "s3cr3t" not in shown  # ...without its userinfo or SAS signature
    assert "sig=" not in shown


# ---------------------------------------------------------------- retry policy


@fast_forward
async def test_transient_failures_retry_with_backoff_until_one_succeeds(tmp_path: Path) -> None:
    policy = PolicySettings(retry_attempts=5, retry_base_s=30.0, retry_max_s=900.0)
    async with rig(tmp_path, policy=policy) as r:
        rel = release(r.downloader, r.key, "2.0.0")
        r.downloader.failures[rel.url] = [
            DownloadError(ReasonCode.DOWNLOAD_FAILED, "connection reset"),
            DownloadError(ReasonCode.DOWNLOAD_TIMEOUT, "no package after 600 s"),
        ]
        loop = asyncio.get_running_loop()
        began = loop.time()
        r.link.set_desired(rel.desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["nextRetryTime"] is not None
        assert "retry 2 of 5" in fw["fwUpdateSubstatus"]
        fw = await r.wait_fw(within=600, fwUpdateStatus="current", currentFwVersion="2.0.0")
        assert len(r.downloader.fetches) == 3
        assert loop.time() - began >= 0.9 * (30 + 60)  # waited the backoff, not at once
        assert fw.get("nextRetryTime") is None


@fast_forward
async def test_permanent_failure_waits_for_the_operator_retry_counter(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        rel = release(r.downloader, r.key, "2.0.0")
        other = keys.generate(keys.Algorithm.ED25519)
        good_blob = r.downloader.packages[rel.url]
        forged = release(FakeDownloader(tmp_path), other, "2.0.0")  # untrusted signer
        r.downloader.packages[rel.url] = forged.blob
        r.link.set_desired(forged.desired(fwPackageURI=rel.url))
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "UNTRUSTED_KEY"
        assert "not retried automatically" in fw["fwUpdateSubstatus"]
        await asyncio.sleep(24 * 3600)  # a day of loop time: nothing retries on its own
        assert len(r.downloader.fetches) == 1
        r.link.set_desired(forged.desired(fwPackageURI=rel.url, retry=1))
        await r.link.wait_for(lambda _: len(r.downloader.fetches) == 2)
        assert good_blob != forged.blob


@fast_forward
async def test_transient_failures_give_up_after_the_limit(tmp_path: Path) -> None:
    policy = PolicySettings(retry_attempts=3, retry_base_s=10.0, retry_max_s=20.0)
    mcu = FakeMcu()
    mcu.failures = [DriverError("MCU_TIMEOUT", "no answer", Step.WRITE)] * 5
    async with rig(tmp_path, mcu=mcu, policy=policy) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(within=600, fwUpdateStatus="error", nextRetryTime=None)
        assert "gave up after 3 attempt(s)" in fw["fwUpdateSubstatus"]
        assert fw["error"]["code"] == "MCU_TIMEOUT"
        await asyncio.sleep(3600)
        assert r.mcu.flashed == ["2.0.0"] * 3

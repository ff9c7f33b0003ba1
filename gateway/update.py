"""One firmware update of one MCU: download, verify, apply, reboot, confirm or roll back.

Every transition is reported to the twin and journalled, so a crash at any point
leaves enough to resume: the MCU keeps its partial slot (a driver with the
``resume`` capability continues it) and the journal keeps the target. The MCU is
reached only through a :class:`protocols.driver.Driver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from firmware.compat import TargetInfo
from firmware.download import Downloader
from firmware.errors import FirmwareError
from firmware.images import recall, remember
from firmware.policy import TrustPolicy, evaluate
from firmware.twin import DesiredFirmware
from firmware.urls import redact_url
from gateway.config import PolicySettings
from gateway.journal import Journal, Outcome
from gateway.logs import McuLogger
from gateway.reported import RUN_FIGURES, FwStatus, error_section, utc_iso, utc_now
from gateway.seams import OpenDriver
from gateway.window import seconds_until_open
from protocols.driver import (
    DeviceFacts,
    DriverError,
    Image,
    InstallResult,
    Phase,
    Progress,
    Step,
)
from protocols.driver import Outcome as InstallOutcome

#: (patch, transition) -> None; queues the report and returns without waiting for the hub.
Report = Callable[[dict[str, Any], bool], Coroutine[Any, Any, None]]

#: Journal progress at most this often (each write is an fsync).
_JOURNAL_EVERY_S = 0.5
#: Reported progress at most this often; the link coalesces further.
_REPORT_EVERY_S = 0.25


class UpdateFailed(Exception):
    def __init__(self, code: str, message: str, phase: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.phase = phase


@dataclass(frozen=True)
class UpdateEnv:
    """What an update needs from the gateway, shared by all MCUs."""

    journal: Journal
    downloader: Downloader
    trust: TrustPolicy
    policy: PolicySettings
    flash_slots: asyncio.Semaphore
    confirm_timeout_s: float


@dataclass(frozen=True)
class UpdateResult:
    outcome: Outcome
    facts: DeviceFacts | None  # read after the outcome
    flash: InstallResult | None


class UpdateRun:
    def __init__(
        self,
        env: UpdateEnv,
        *,
        uid: str,
        desired: DesiredFirmware,
        facts: DeviceFacts,
        driver: OpenDriver,
        report: Report,
        log: McuLogger,
    ) -> None:
        self.env = env
        self.uid = uid
        self.desired = desired
        self.facts = facts
        self._driver = driver
        self._report = report
        self.log = log
        self.phase = Phase.DOWNLOADING
        self.started = utc_now()
        #: Wall-clock time (time.time()) the run began, and when the first DATA frame went out.
        self.began_at = time.time()
        self.first_data_at: float | None = None
        self._last_journal = 0.0
        self._last_report = 0.0

    async def _status(self, status: FwStatus, substatus: str, **fields: Any) -> None:
        patch: dict[str, Any] = {
            "fwUpdateStatus": status.value,
            "fwUpdateSubstatus": substatus,
            "pendingFwVersion": self.desired.fwVersion,
            "lastFwUpdateStartTime": self.started,
            "error": None,
            **fields,
        }
        self.log.phase(status.value).info("%s", substatus)
        # Transitions go out at once so the twin walks every status; progress is coalesced.
        await self._report({"firmware": patch}, True)

    async def run(self) -> UpdateResult:
        d = self.desired
        journal = self.env.journal
        # The journal keeps the URL for people reading it, so without its credentials.
        record = journal.begin_update(self.uid, d.fwVersion, d.fwPackageCheckValue,
                                      redact_url(d.fwPackageURI))  # fmt: skip
        self.started = utc_iso(record.started_at)  # a resumed run keeps its first start
        # The last run's figures and end time would be stale beside this run's status.
        await self._status(FwStatus.DOWNLOADING, f"downloading {redact_url(d.fwPackageURI)}",
                           progress=0, bytesWritten=0, lastFwUpdateEndTime=None,
                           nextRetryTime=None, **RUN_FIGURES)  # fmt: skip
        data = await self._download()
        self.phase = Phase.VERIFYING
        journal.set_phase(self.uid, Phase.VERIFYING)
        await self._status(FwStatus.VERIFYING, "checking hash, signature, compatibility, version")
        payload = self._verify(data)
        if d.installWindow is not None:
            await self._await_window()
        self.phase = Phase.APPLYING
        journal.set_phase(self.uid, Phase.APPLYING)
        await self._status(FwStatus.APPLYING, "waiting for a flash slot", progress=0)
        async with self.env.flash_slots:
            result = await self._apply(payload)
        return result

    async def _download(self) -> bytes:
        d = self.desired
        cap = self.env.policy.max_download_bytes
        if d.fwPackageSize is not None:
            cap = min(cap, d.fwPackageSize)
        try:
            async with self.env.downloader.fetch(
                d.fwPackageURI,
                d.fwPackageCheckValue,
                max_size=cap,
                expected_size=d.fwPackageSize,
                deadline_s=self.env.policy.download_deadline_s,
            ) as path:
                return await asyncio.to_thread(path.read_bytes)
        except FirmwareError as exc:
            raise UpdateFailed(exc.reason.value, exc.message, Phase.DOWNLOADING.value) from exc

    def _verify(self, data: bytes) -> bytes:
        facts = self.facts
        target = TargetInfo(
            compat=facts.compat,
            model=facts.model,
            installed_version=facts.installed_version,
            slot_size=facts.capacity,
        )
        verdict = evaluate(data, desired=self.desired, target=target, policy=self.env.trust)
        if not verdict.ok or verdict.package is None:
            raise UpdateFailed(verdict.reason.value, verdict.message, Phase.VERIFYING.value)
        return verdict.package.payload

    async def _await_window(self) -> None:
        window = self.desired.installWindow
        assert window is not None
        while (wait := seconds_until_open(window)) > 0:
            await self._status(
                FwStatus.VERIFYING,
                f"verified; waiting for install window {window.start}-{window.end} {window.tz}",
            )
            await asyncio.sleep(min(wait, 60.0))  # re-check: clocks jump

    async def _apply(self, payload: bytes) -> UpdateResult:
        total = len(payload)
        await self._status(FwStatus.APPLYING, f"writing {total} bytes", progress=0, bytesWritten=0)
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        def spawn(report: Coroutine[Any, Any, None]) -> None:
            # The progress callback is synchronous; the reports it triggers run beside it.
            task = loop.create_task(report)
            pending.add(task)
            task.add_done_callback(pending.discard)

        def progress(event: Progress) -> None:
            now = time.monotonic()
            step = event.step
            if step is Step.WRITE and self.first_data_at is None:
                self.first_data_at = time.time()  # fires right before the first bytes go out
            if step.phase is Phase.REBOOTING:
                if self.phase is not Phase.REBOOTING:
                    self.phase = Phase.REBOOTING
                    self.env.journal.set_phase(self.uid, Phase.REBOOTING)
                    spawn(
                        self._status(
                            FwStatus.REBOOTING,
                            "booting the new image; waiting for the app to confirm",
                            progress=100,
                            bytesWritten=total,
                        )
                    )
                return
            if step is Step.WRITE and now - self._last_journal >= _JOURNAL_EVERY_S:
                self._last_journal = now
                self.env.journal.record_progress(self.uid, event.done)
            if now - self._last_report >= _REPORT_EVERY_S or event.done == event.total:
                self._last_report = now
                patch: dict[str, Any] = {
                    "fwUpdateStatus": FwStatus.APPLYING.value,
                    "fwUpdateSubstatus": _STEP_TEXT[step],
                }
                if step is Step.WRITE:
                    patch["progress"] = event.done * 100 // max(1, event.total)
                    patch["bytesWritten"] = event.done
                spawn(self._report({"firmware": patch}, False))

        digest = hashlib.sha256(payload).hexdigest()
        cache = self.env.downloader.cache
        # The image the MCU runs, if this gateway wrote it: the base of a delta.
        base = await asyncio.to_thread(recall, cache, self.facts.installed_sha256)
        try:
            async with self._driver() as driver:
                result = await driver.install(
                    Image(payload, self.desired.fwVersion, digest, base), progress
                )
        except DriverError as exc:
            raise UpdateFailed(exc.code, exc.message, exc.phase.value) from exc
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.env.journal.record_progress(self.uid, total, result.resumed_from)
        if result.outcome is InstallOutcome.CONFIRMED:
            with contextlib.suppress(FirmwareError, OSError):
                # Kept for the next update's delta; losing it only costs bytes.
                await asyncio.to_thread(remember, cache, payload)
            return UpdateResult(Outcome.CURRENT, result.facts, result)
        if result.outcome is InstallOutcome.ROLLED_BACK:
            return UpdateResult(Outcome.ROLLEDBACK, result.facts, result)
        raise UpdateFailed(
            "APP_NOT_CONFIRMED",
            f"the app did not confirm within {self.env.confirm_timeout_s:g} s of its trial boot",
            Phase.REBOOTING.value,
        )


#: ``fwUpdateSubstatus`` while a driver works through an install.
_STEP_TEXT = {
    Step.CONNECT: "reaching the bootloader",
    Step.ERASE: "erasing",
    Step.WRITE: "writing",
    Step.CHECK: "MCU checking the written image",
    Step.ACTIVATE: "marking the new image bootable",
    Step.BOOT: "booting the new image",
}


def final_report(
    outcome: Outcome,
    *,
    desired: DesiredFirmware,
    started: str,
    installed: str | None,
    flash: InstallResult | None = None,
    failure: UpdateFailed | None = None,
) -> dict[str, Any]:
    fw: dict[str, Any] = {
        "currentFwVersion": installed,
        "pendingFwVersion": None,
        "lastFwUpdateStartTime": started,
        "lastFwUpdateEndTime": utc_now(),
    }
    if outcome is Outcome.CURRENT:
        fw.update(
            fwUpdateStatus=FwStatus.CURRENT.value,
            fwUpdateSubstatus=f"installed {desired.fwVersion}",
            progress=100,
            error=None,
        )
    elif outcome is Outcome.ROLLEDBACK:
        fw.update(
            fwUpdateStatus=FwStatus.ROLLEDBACK.value,
            fwUpdateSubstatus=f"{desired.fwVersion} did not confirm; rolled back to {installed}",
            error=error_section(
                "ROLLED_BACK",
                f"trial boot of {desired.fwVersion} failed; the bootloader restored {installed}",
                Phase.REBOOTING.value,
            ),
        )
    else:
        assert failure is not None
        fw.update(
            fwUpdateStatus=FwStatus.ERROR.value,
            fwUpdateSubstatus=f"update to {desired.fwVersion} failed: {failure.code}",
            error=error_section(failure.code, failure.message, failure.phase),
        )
    if flash is not None:
        fw.update(
            bytesWritten=flash.bytes,
            resumedFrom=flash.resumed_from,
            retransmits=flash.retransmits,
            flashSeconds=round(flash.seconds, 3),
        )
    return {"firmware": fw}

"""One firmware update of one MCU: download, verify, apply, reboot, confirm or roll back.

Every transition is reported to the twin and journalled, so a crash at any point
leaves enough to resume: the MCU keeps its partial slot (a driver with the
``resume`` capability continues it) and the journal keeps the target. The MCU is
reached only through a :class:`protocols.driver.Driver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from firmware.compat import TargetInfo
from firmware.download import Downloader
from firmware.errors import FirmwareError
from firmware.images import recall, remember
from firmware.package import Package
from firmware.policy import TrustPolicy, evaluate
from firmware.reasons import ReasonCode
from firmware.twin import DesiredFirmware
from firmware.urls import redact_url
from gateway.codes import GatewayCode, code_of
from gateway.config import PolicySettings
from gateway.errors import JournalFull
from gateway.journal import Journal, Outcome
from gateway.logs import McuLogger
from gateway.reconcile import on_trial, same_version
from gateway.reported import RUN_FIGURES, FwStatus, error_section, utc_iso, utc_now
from gateway.seams import OpenDriver
from gateway.window import seconds_until_open
from protocols.driver import (
    Capability,
    DeltaPayload,
    DeviceFacts,
    DriverError,
    Image,
    InstallResult,
    Phase,
    Progress,
    Safety,
    Step,
)
from protocols.driver import Outcome as InstallOutcome
from protocols.failures import AnyCode, Kind

#: (patch, transition) -> None; queues the report and returns without waiting for the hub.
Report = Callable[[dict[str, Any], bool], Coroutine[Any, Any, None]]

#: Journal progress at most this often. Each write is an fsync on the event
#: loop, and dozens of flashes run at once; a resume starts from the MCU's own
#: offset, so the journal's figure only needs to be roughly current.
_JOURNAL_EVERY_S = 2.0
#: Reported progress at most this often: the link sends one PATCH a second
#: (``report_interval_s``), so faster reports would only be merged away and
#: cost CPU on the way (issue 23.11).
_REPORT_EVERY_S = 1.0


class UpdateFailed(Exception):
    """An update failed: ``code`` is the twin's ``error.code``, ``kind`` decides retry."""

    def __init__(self, code: AnyCode | str, message: str, phase: str) -> None:
        super().__init__(message)
        typed = code_of(code)
        if typed is None:
            raise ValueError(f"error code {code!r} is in no code table")
        self.code: AnyCode = typed
        self.kind: Kind = typed.kind
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
        #: A single-slot install erased the application and has not written its new
        #: version record yet: the MCU has no version until this install completes.
        self.app_erased = False

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
        try:
            record = journal.begin_update(self.uid, d.fwVersion, d.fwPackageCheckValue,
                                          redact_url(d.fwPackageURI))  # fmt: skip
        except JournalFull as exc:
            # Nothing starts that a crash could not account for; retried when space is back.
            raise UpdateFailed(
                ReasonCode.STORAGE_FULL,
                f"{exc}: the update needs room to be journalled",
                Phase.DOWNLOADING.value,
            ) from exc
        self.started = utc_iso(record.started_at)  # a resumed run keeps its first start
        # The last run's figures and end time would be stale beside this run's status.
        await self._status(FwStatus.DOWNLOADING, f"downloading {redact_url(d.fwPackageURI)}",
                           progress=0, bytesWritten=0, lastFwUpdateEndTime=None,
                           nextRetryTime=None, **RUN_FIGURES)  # fmt: skip
        package = await self._fetch_verified(d)
        if d.installWindow is not None:
            await self._await_window()
        self.phase = Phase.APPLYING
        journal.best_effort(lambda: journal.set_phase(self.uid, Phase.APPLYING))
        await self._status(FwStatus.APPLYING, "waiting for a flash slot", progress=0)
        async with self.env.flash_slots:
            try:
                return await self._apply(package)
            except UpdateFailed as exc:
                # The MCU itself refused the delta (its fallback slot is not the
                # base, whatever INFO said earlier): send the full package.
                if exc.kind is not Kind.DELTA or d.fwFullPackage is None:
                    raise
                self.log.warning("MCU refused the delta (%s); using fwFullPackage", exc.message)
            full = await self._fetch_verified(_full(d))
            return await self._apply(full)

    async def _fetch_verified(self, d: DesiredFirmware) -> Package:
        """Download and verify ``d``'s package; a delta that does not fit falls back to full."""
        if d is not self.desired:
            await self._status(FwStatus.DOWNLOADING, f"downloading {redact_url(d.fwPackageURI)}")
        self.phase = Phase.DOWNLOADING
        data = await self._download(d)
        self.phase = Phase.VERIFYING
        journal = self.env.journal
        journal.best_effort(lambda: journal.set_phase(self.uid, Phase.VERIFYING))
        await self._status(FwStatus.VERIFYING, "checking hash, signature, compatibility, version")
        try:
            return self._verify(data, d)
        except UpdateFailed as exc:
            if exc.kind is not Kind.DELTA or d.fwFullPackage is None:
                raise
            self.log.info("%s; using fwFullPackage", exc.message)
        return await self._fetch_verified(_full(d))

    async def _download(self, d: DesiredFirmware) -> bytes:
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
            raise UpdateFailed(exc.reason, exc.message, Phase.DOWNLOADING.value) from exc

    def _verify(self, data: bytes, desired: DesiredFirmware) -> Package:
        facts = self.facts
        target = TargetInfo(
            compat=facts.compat,
            model=facts.model,
            installed_version=facts.installed_version,
            slot_size=facts.capacity,
            delta_base_sha256=delta_base_sha256(facts),
        )
        verdict = evaluate(
            data,
            desired=desired,
            target=target,
            policy=self.env.trust,
            allow_delta=Capability.DELTA in facts.capabilities,
        )
        if not verdict.ok or verdict.package is None:
            raise UpdateFailed(verdict.reason, verdict.message, Phase.VERIFYING.value)
        return verdict.package

    async def _await_window(self) -> None:
        window = self.desired.installWindow
        assert window is not None
        while (wait := seconds_until_open(window)) > 0:
            await self._status(
                FwStatus.VERIFYING,
                f"verified; waiting for install window {window.start}-{window.end} {window.tz}",
            )
            await asyncio.sleep(min(wait, 60.0))  # re-check: clocks jump

    async def _apply(self, package: Package) -> UpdateResult:
        payload = package.payload
        m = package.manifest
        total = m.image_size
        await self._status(FwStatus.APPLYING, f"writing {total} bytes", progress=0, bytesWritten=0)
        loop = asyncio.get_running_loop()
        journal = self.env.journal
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
                    journal.best_effort(lambda: journal.set_phase(self.uid, Phase.REBOOTING))
                    spawn(
                        self._status(
                            FwStatus.REBOOTING,
                            "booting the new image; waiting for the app to confirm",
                            progress=100,
                            bytesWritten=total,
                        )
                    )
                return
            if self.facts.safety is Safety.SINGLE_SLOT:
                if step is Step.ERASE and not self.app_erased:
                    self.app_erased = True
                    # The old version is gone from the MCU from here on: never claim it.
                    spawn(self._report({"firmware": {"currentFwVersion": None}}, True))
                elif step is Step.ACTIVATE and event.total and event.done == event.total:
                    self.app_erased = False  # the new version record is written and read back
            if step is Step.WRITE and now - self._last_journal >= _JOURNAL_EVERY_S:
                self._last_journal = now
                journal.best_effort(lambda: journal.record_progress(self.uid, event.done))
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

        cache = self.env.downloader.cache
        if m.is_delta:
            assert m.delta_target_sha256 is not None and m.delta_base_sha256 is not None
            image = Image(b"", self.desired.fwVersion, m.delta_target_sha256,
                          delta=DeltaPayload(payload, total, m.delta_base_sha256),
                          target=m.target_image)  # fmt: skip
        else:
            # The image the MCU runs, if this gateway wrote it: the base of a delta.
            base = await asyncio.to_thread(recall, cache, delta_base_sha256(self.facts))
            digest = hashlib.sha256(payload).hexdigest()
            image = Image(payload, self.desired.fwVersion, digest, base, target=m.target_image)
        try:
            async with self._driver() as driver:
                result = await driver.install(image, progress)
        except DriverError as exc:
            raise UpdateFailed(exc.code, exc.message, exc.phase.value) from exc
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        journal.best_effort(lambda: journal.record_progress(self.uid, total, result.resumed_from))
        if result.outcome is InstallOutcome.CONFIRMED:
            self._check_claim(result.facts)
            if not m.is_delta:
                with contextlib.suppress(FirmwareError, OSError):
                    # Kept for the next update's delta; losing it only costs bytes.
                    await asyncio.to_thread(remember, cache, payload)
            return UpdateResult(Outcome.CURRENT, result.facts, result)
        if result.outcome is InstallOutcome.ROLLED_BACK:
            return UpdateResult(Outcome.ROLLEDBACK, result.facts, result)
        raise UpdateFailed(
            GatewayCode.APP_NOT_CONFIRMED,
            f"the app did not confirm within {self.env.confirm_timeout_s:g} s of its trial boot",
            Phase.REBOOTING.value,
        )

    def _check_claim(self, facts: DeviceFacts) -> None:
        """A driver's *confirmed* stands only if the MCU itself says so, read afterwards.

        The twin never claims what the MCU does not report: not a version it does
        not name (the same bytes under a new version, issue 23.1), nor an image
        still on trial (issue 17.2).
        """
        wanted = self.desired.fwVersion
        if on_trial(facts):
            raise UpdateFailed(
                GatewayCode.APP_NOT_CONFIRMED,
                f"the driver reported {wanted} confirmed, but the MCU runs "
                f"{facts.installed_version} on trial",
                Phase.REBOOTING.value,
            )
        if not same_version(facts.installed_version, wanted):
            raise UpdateFailed(
                GatewayCode.MCU_VERSION_MISMATCH,
                f"after installing {wanted} the MCU reports version "
                f"{facts.installed_version or 'none'}",
                Phase.REBOOTING.value,
            )


def _full(d: DesiredFirmware) -> DesiredFirmware:
    full = d.fwFullPackage
    assert full is not None
    return dataclasses.replace(
        d,
        fwPackageURI=full.fwPackageURI,
        fwPackageCheckValue=full.fwPackageCheckValue,
        fwPackageSize=full.fwPackageSize,
        fwFullPackage=None,
    )


def delta_base_sha256(facts: DeviceFacts) -> str | None:
    """The image a delta would read: the running slot's, else the one confirmed slot's."""
    if facts.installed_sha256:
        return facts.installed_sha256
    confirmed = [s for s in facts.slots if s.state.value == "confirmed" and s.sha256]
    return confirmed[0].sha256 if len(confirmed) == 1 else None


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
                GatewayCode.ROLLED_BACK,
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
            transferEncoding=flash.encoding.value,
            payloadBytes=flash.sent_payload_bytes,
        )
    return {"firmware": fw}

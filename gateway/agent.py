"""One attached MCU: its IoT Hub device link, desired-state watching, updates, methods."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import semver

from firmware.errors import DesiredFirmwareError
from firmware.twin import DesiredFirmware, parse_desired
from gateway.cloud import DeviceTwinLink
from gateway.discovery import Probe
from gateway.errors import CloudAuthError, CloudError
from gateway.journal import Outcome
from gateway.logs import mcu_logger
from gateway.reported import (
    FwStatus,
    error_section,
    installed_version,
    mcu_section,
    redacted,
    slots_section,
    utc_now,
)
from gateway.update import UpdateEnv, UpdateFailed, UpdateRun, final_report
from protocols.constants import Mode, ResetMode
from protocols.errors import ProtocolError
from protocols.session import BootloaderSession
from protocols.transport import open_transport

#: Longest wait between attempts to bring an MCU's hub connection up.
_MAX_CONNECT_BACKOFF_S = 30.0

# (version, URI, check value, install window) of a desired firmware: a change of any
# of them restarts the update (the package itself comes from the cache).
Signature = tuple[str, str, str, str]


def _same_version(a: str | None, b: str) -> bool:
    if a is None:
        return False
    try:
        return semver.Version.parse(a) == semver.Version.parse(b)
    except ValueError:
        return a == b


class McuAgent:
    def __init__(
        self,
        *,
        env: UpdateEnv,
        probe: Probe,
        device_id: str,
        gateway_id: str,
        link: DeviceTwinLink,
        baud: int,
        allowed_schemes: tuple[str, ...],
    ) -> None:
        self.env = env
        self.device_id = device_id
        self.gateway_id = gateway_id
        self.link = link
        self.baud = baud
        self.allowed_schemes = allowed_schemes
        self.port = probe.port
        self.hello = probe.hello
        self.info = probe.info
        self.uid = probe.info.uid.hex()
        self.connected = True
        self.log = mcu_logger("gateway.mcu", device_id)
        self._port_lock = asyncio.Lock()
        self._update: asyncio.Task[None] | None = None
        self._update_sig: Signature | None = None
        self._gave_up: set[Signature] = set()  # failed desired states, not retried on their own
        self._transient: set[Signature] = set()  # of those, failures a reattach may cure
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.last_result: dict[str, Any] = {}
        self.progress: tuple[str, int, int] = ("current", 0, 0)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.link.on_method("getInfo", self._method_get_info)
        self.link.on_method("reboot", self._method_reboot)
        self.link.on_method("abortUpdate", self._method_abort)
        self._tasks.append(asyncio.create_task(self._main(), name=f"mcu {self.device_id}"))

    async def _main(self) -> None:
        await self._connect_with_retry()
        self.env.journal.upsert_mcu(
            self.uid,
            device_id=self.device_id,
            model=self.info.model,
            port=self.port,
            slots=self._slots(),
        )
        await self._report_state()
        self._evaluate()
        async for patch in self.link.desired_patches():
            if "firmware" in patch:
                self._evaluate()

    async def _connect_with_retry(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.link.connect()
                await self.link.get_twin()
                return
            except CloudAuthError as exc:
                self.log.error("hub refused the device credentials: %s", exc)
            except CloudError as exc:
                self.log.warning("hub connection failed, retrying in %.0f s: %s", delay, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_CONNECT_BACKOFF_S)

    async def close(self) -> None:
        """Stop; a running update is parked: the MCU keeps its partial slot, the journal its row."""
        self._closing = True
        if self._update is not None:
            self._update.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._update
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.link.close(flush_timeout=3.0)

    # ------------------------------------------------------------ port handling

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[BootloaderSession]:
        async with self._port_lock:
            transport = await open_transport(self.port, self.baud)
            try:
                yield BootloaderSession(transport, self.baud)
            finally:
                await transport.close()

    def _slots(self) -> list[dict[str, Any]]:
        return slots_section(self.info)

    async def _report(self, patch: dict[str, Any], now: bool = False) -> None:
        patch = redacted(patch)
        try:
            if now:
                await self.link.report_now(patch)
            else:
                await self.link.report(patch)
        except CloudError as exc:
            # Kept pending by the link and resent after reconnect.
            self.log.warning("reported properties deferred: %s", exc)

    async def _report_state(self) -> None:
        section = mcu_section(
            self.hello, self.info, port=self.port, gateway_id=self.gateway_id,
            connected=self.connected,
        )  # fmt: skip
        fw: dict[str, Any] = {"currentFwVersion": installed_version(self.info)}
        if self._update is None:
            fw["fwUpdateStatus"] = FwStatus.CURRENT.value
        await self._report({"mcu": section, "firmware": fw}, now=True)

    async def mark_disconnected(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.log.warning("MCU unplugged from %s", self.port)
        # A running flash fails on the dead port by itself and reports why.
        await self._report({"mcu": {"connected": False}}, now=True)

    async def reattach(self, probe: Probe) -> None:
        self.port, self.hello, self.info = probe.port, probe.hello, probe.info
        self.connected = True
        self.log.info("MCU back on %s", self.port)
        self.env.journal.upsert_mcu(
            self.uid, device_id=self.device_id, model=self.info.model, port=self.port,
            slots=self._slots(),
        )  # fmt: skip
        await self._report_state()
        # A failure caused by the unplug is worth retrying now that it is back.
        self._gave_up = {s for s in self._gave_up if s not in self._transient}
        self._evaluate()

    # ------------------------------------------------------------ desired state

    def _evaluate(self) -> None:
        if self._closing:
            return
        raw = self.link.desired.get("firmware")
        if raw is None:
            return
        try:
            desired = parse_desired(raw, allowed_schemes=self.allowed_schemes)
        except DesiredFirmwareError as exc:
            self.log.warning("desired firmware rejected: %s", exc.message)
            self._spawn_report(
                {
                    "firmware": {
                        "fwUpdateStatus": FwStatus.ERROR.value,
                        "fwUpdateSubstatus": f"desired firmware invalid: {exc.field}",
                        "error": error_section(exc.reason.value, exc.message, "desired"),
                    }
                }
            )
            return
        window = desired.installWindow
        sig: Signature = (
            desired.fwVersion,
            desired.fwPackageURI,
            desired.fwPackageCheckValue,
            "" if window is None else f"{window.start}-{window.end} {window.tz}",
        )
        if self._update is not None and not self._update.done():
            if sig == self._update_sig:
                return
            self.log.info("desired firmware changed during an update; restarting with %s",
                          desired.fwVersion)  # fmt: skip
            self._update.cancel()
        elif _same_version(installed_version(self.info), desired.fwVersion):
            journal = self.env.journal
            if journal.update_in_progress(self.uid) is not None:
                journal.finish_update(self.uid, Outcome.CURRENT)
            return
        if sig in self._gave_up or not self.connected:
            return
        previous = self._update
        self._update_sig = sig
        self._update = asyncio.create_task(self._run_update(desired, sig, previous))

    def _spawn_report(self, patch: dict[str, Any]) -> None:
        task = asyncio.create_task(self._report(patch, now=True))
        self._tasks = [t for t in self._tasks if not t.done()] + [task]

    async def _run_update(
        self, desired: DesiredFirmware, sig: Signature, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous  # its session must release the port first
        run = UpdateRun(
            self.env, uid=self.uid, desired=desired, info=self.info, session=self.session,
            report=self._report, log=self.log,
        )  # fmt: skip
        journal = self.env.journal
        try:
            result = await run.run()
        except asyncio.CancelledError:
            if not self._closing and self._update_sig == sig:
                # Aborted (method or unplug), not superseded: say so in the twin.
                journal.finish_update(self.uid, Outcome.CANCELLED, error_code="ABORTED")
            raise
        except UpdateFailed as exc:
            await self._failed(desired, sig, run.started, exc)
            return
        except Exception as exc:  # a bug must not take the other MCUs down
            self.log.exception("update crashed")
            failure = UpdateFailed(
                "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", run.phase.value
            )
            await self._failed(desired, sig, run.started, failure)
            return
        if result.info is not None:
            self.info = result.info
        journal.finish_update(self.uid, result.outcome)
        journal.set_slots(self.uid, self._slots())
        if result.outcome is not Outcome.CURRENT:
            self._gave_up.add(sig)
        if result.flash is not None:
            self.last_result = {
                "version": desired.fwVersion,
                "seconds": result.flash.seconds,
                "bytes": result.flash.bytes,
                "resumed_from": result.flash.resumed_from,
                "began_at": run.began_at,
                "first_data_at": run.first_data_at,
            }
        outcome = result.outcome
        self.log.phase(outcome.value).info("update to %s: %s", desired.fwVersion, outcome.value)
        installed = installed_version(self.info)
        patch = final_report(
            outcome, desired=desired, started=run.started, installed=installed, flash=result.flash
        )
        patch["mcu"] = {"slots": self._slots()}
        await self._report(patch, now=True)

    async def _failed(
        self, desired: DesiredFirmware, sig: Signature, started: str, exc: UpdateFailed
    ) -> None:
        self.log.phase(exc.phase).error(
            "update to %s failed: %s %s", desired.fwVersion, exc.code, exc.message
        )
        self._gave_up.add(sig)
        if exc.phase in ("applying", "rebooting") and exc.code.startswith("MCU_"):
            self._transient.add(sig)  # the link or the MCU, not the package: retry on reattach
        self.env.journal.finish_update(
            self.uid, Outcome.ERROR, error_code=exc.code, message=exc.message
        )
        await self._refresh_info(restart_app=True)
        installed = installed_version(self.info)
        patch = final_report(
            Outcome.ERROR, desired=desired, started=started, installed=installed, failure=exc
        )
        await self._report(patch, now=True)

    async def _refresh_info(self, *, restart_app: bool = False) -> None:
        """Re-read INFO; after a failed or aborted flash, boot the old app again first."""
        try:
            async with asyncio.timeout(15):
                async with self.session() as s:
                    self.hello = await s.hello()
                    if restart_app and self.hello.mode is Mode.BOOTLOADER:
                        # A failed transfer leaves the MCU waiting in its bootloader;
                        # the confirmed image is intact, so run it again.
                        await s.info()
                        await s.reset(ResetMode.RUN)
                        self.hello = await s.await_boot()
                    self.info = await s.info()
        except (ProtocolError, TimeoutError) as exc:
            self.log.warning("could not re-read INFO: %s", exc)

    # ------------------------------------------------------------ direct methods

    async def _method_get_info(self, payload: Any) -> tuple[int, Any]:
        from gateway.cli.info import info_dict

        if self._port_lock.locked():
            return 200, {**info_dict(self.hello, self.info), "busy": True}
        await self._refresh_info()
        return 200, {**info_dict(self.hello, self.info), "busy": False}

    async def _method_reboot(self, payload: Any) -> tuple[int, Any]:
        if self._update is not None and not self._update.done():
            return 409, {"error": "an update is in progress; call abortUpdate first"}
        try:
            async with asyncio.timeout(10):
                async with self.session() as s:
                    await s.hello()
                    await s.reset(ResetMode.RUN)
        except (ProtocolError, TimeoutError) as exc:
            return 504, {"error": f"reboot failed: {exc}"}
        return 200, {"rebooted": True}

    async def _method_abort(self, payload: Any) -> tuple[int, Any]:
        task = self._update
        if task is None or task.done():
            return 404, {"error": "no update in progress"}
        sig = self._update_sig
        if sig is not None:
            self._gave_up.add(sig)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self._refresh_info(restart_app=True)
        await self._report(
            {
                "firmware": {
                    "fwUpdateStatus": FwStatus.ERROR.value,
                    "fwUpdateSubstatus": "update aborted by abortUpdate",
                    "pendingFwVersion": None,
                    "currentFwVersion": installed_version(self.info),
                    "lastFwUpdateEndTime": utc_now(),
                    "error": error_section(
                        "ABORTED", "aborted by the abortUpdate method", "applying"
                    ),
                }
            },
            now=True,
        )
        return 200, {"aborted": True}

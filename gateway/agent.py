"""One attached MCU: its IoT Hub device link, desired-state watching, updates, methods.

The agent talks to the cloud through a :class:`gateway.seams.TwinLink` and to the
MCU through its bootloader driver (:class:`protocols.driver.Driver`), so its decisions can be tested
against in-memory fakes. Reports never wait for the hub: a status change is
queued with the time it happened and the flash goes on (issue: a slow hub once
held the serial port and a flash slot for ``call_timeout_s`` per transition).

What it decides, in order, whenever the desired firmware changes:

* desired == installed: nothing to flash. A running update for another
  version is stopped (never re-flash the installed version: that would wipe
  the fallback slot and reboot the app), and the twin says ``current`` with
  no error. An image the MCU runs *on trial* (its app has not confirmed it) is
  not installed: it is never reported ``current``, and its update goes on.
* desired == the running update's target: carry on.
* otherwise start (or restart) the update, unless that package already failed
  for good, or is waiting for its next automatic retry (:mod:`gateway.retry`).
  A new value of the desired ``retry`` counter clears both.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from firmware.errors import DesiredFirmwareError
from firmware.reasons import ReasonCode
from firmware.twin import DesiredFirmware, parse_desired
from gateway.codes import GatewayCode
from gateway.discovery import Probe
from gateway.errors import CloudAuthError, CloudError, JournalError
from gateway.journal import Outcome
from gateway.logs import mcu_logger
from gateway.reconcile import app_erased as reconcile_app_erased
from gateway.reconcile import current, on_trial, on_trial_report, reconcile, same_version
from gateway.reported import (
    FwStatus,
    error_section,
    mcu_section,
    redacted,
    slots_section,
    utc_iso,
    utc_now,
)
from gateway.retry import retry_delay, update_retry_policy
from gateway.seams import OpenDriver, TwinLink
from gateway.update import UpdateEnv, UpdateFailed, UpdateRun, final_report
from protocols import registry
from protocols.backoff import Backoff
from protocols.driver import Driver, DriverError, Phase

#: Waits between attempts to bring an MCU's hub connection up: 1 s doubling to 30 s, each
#: scaled by 0.5..1 so the MCUs of one gateway do not reconnect in step.
_CONNECT_BACKOFF = Backoff(1.0, 30.0, (0.5, 1.0))

#: How often an update that failed for a full disk looks for the space to come back.
_ROOM_POLL_S = 5.0
#: Free bytes beyond the package that count as "space is back" (the journal's writes).
_JOURNAL_ROOM = 256 * 1024

# (version, URI, check value, install window) of a desired firmware: a change of any
# of them restarts the update (the package itself comes from the cache).
Signature = tuple[str, str, str, str]


def _signature(desired: DesiredFirmware) -> Signature:
    window = desired.installWindow
    return (
        desired.fwVersion,
        desired.fwPackageURI,
        desired.fwPackageCheckValue,
        "" if window is None else f"{window.start}-{window.end} {window.tz}",
    )


class McuAgent:
    def __init__(
        self,
        *,
        env: UpdateEnv,
        probe: Probe,
        device_id: str,
        gateway_id: str,
        link: TwinLink,
        allowed_schemes: tuple[str, ...],
        open_driver: OpenDriver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.env = env
        self.device_id = device_id
        self.gateway_id = gateway_id
        self.link = link
        self.allowed_schemes = allowed_schemes
        self.port = probe.port
        self.driver = probe.driver
        self.options = probe.options
        self.facts = probe.facts
        self.uid = probe.facts.uid
        self.connected = True
        self.log = mcu_logger("gateway.mcu", device_id)
        self.retry_policy = update_retry_policy(env.policy)
        self._open_driver = open_driver or self._serial_driver
        self._rng = rng or random.Random()
        self._port_lock = asyncio.Lock()
        self._update: asyncio.Task[None] | None = None
        self._update_sig: Signature | None = None
        self._gave_up: set[Signature] = set()  # failed desired states, not retried on their own
        self._transient: set[Signature] = set()  # of those, failures a reattach may cure
        self._failures: dict[Signature, int] = {}  # failed attempts in a row
        self._retry_timer: asyncio.Task[None] | None = None
        self._retry_sig: Signature | None = None
        self._operator_retry: int | None = None  # the desired "retry" counter last seen
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
        self.env.journal.best_effort(
            lambda: self.env.journal.upsert_mcu(
                self.uid,
                device_id=self.device_id,
                model=self.facts.model,
                port=self.port,
                slots=self._slots(),
            )
        )
        await self._report_startup()
        self._evaluate()
        async for patch in self.link.desired_patches():
            if "firmware" in patch:
                self._evaluate()

    async def _connect_with_retry(self) -> None:
        delays = _CONNECT_BACKOFF.counter(self._rng)
        while True:
            try:
                await self.link.connect()
                await self.link.get_twin()
                return
            except CloudAuthError as exc:
                self.log.error("hub refused the device credentials: %s", exc)
                delay = delays.next()
            except CloudError as exc:
                delay = delays.next()
                self.log.warning("hub connection failed, retrying in %.0f s: %s", delay, exc)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Stop; a running update is parked: the MCU keeps its partial slot, the journal its row."""
        self._closing = True
        self._cancel_retry_timer()
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
    async def session(self) -> AsyncIterator[Driver]:
        """The MCU's driver for the duration of the block; one user at a time."""
        async with self._port_lock, self._open_driver() as driver:
            yield driver

    def _serial_driver(self) -> contextlib.AbstractAsyncContextManager[Driver]:
        return registry.open_driver(self.port, self.driver, self.options)

    @property
    def installed(self) -> str | None:
        return self.facts.installed_version

    def _slots(self) -> list[dict[str, Any]]:
        return slots_section(self.facts)

    async def _report(self, patch: dict[str, Any], now: bool = False) -> None:
        """Queue a report; ``now`` marks a transition (sent without the rate limit).

        Never waits for the hub, so a slow or unreachable hub cannot hold the
        serial port or a flash slot; the patch carries the event's own times.
        """
        try:
            await self.link.report(redacted(patch), urgent=now)
        except CloudError as exc:  # only when the link is closed: we are shutting down
            self.log.warning("reported properties dropped: %s", exc)

    def _mcu_section(self) -> dict[str, Any]:
        return mcu_section(
            self.facts, port=self.port, gateway_id=self.gateway_id, connected=self.connected
        )

    async def _report_startup(self) -> None:
        """The first report: the truth from the journal and the MCU, before any work."""
        journal = self.env.journal
        installed = self.installed
        desired = self._parsed_desired()
        try:
            run, last = journal.update_in_progress(self.uid), journal.last_outcome(self.uid)
        except JournalError as exc:  # unreadable: report from the MCU's own facts alone
            self.log.warning("journal unreadable at start-up: %s", exc)
            run = last = None
        state = reconcile(
            installed=installed,
            desired=desired,
            run=run,
            last=last,
            trial=on_trial(self.facts),
        )
        finish = state.finish
        if finish is not None:
            journal.best_effort(lambda: journal.finish_update(self.uid, finish))
        if state.gave_up and desired is not None:
            self._gave_up.add(_signature(desired))
        await self._report({"mcu": self._mcu_section(), "firmware": state.firmware}, now=True)

    async def mark_disconnected(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.log.warning("MCU unplugged from %s", self.port)
        # A running flash fails on the dead port by itself and reports why.
        await self._report({"mcu": {"connected": False}}, now=True)

    async def reattach(self, probe: Probe) -> None:
        self.port, self.driver, self.options = probe.port, probe.driver, probe.options
        self.facts = probe.facts
        self.connected = True
        self.log.info("MCU back on %s", self.port)
        self.env.journal.best_effort(lambda: self.env.journal.upsert_mcu(
            self.uid, device_id=self.device_id, model=self.facts.model, port=self.port,
            slots=self._slots(),
        ))  # fmt: skip
        fw = {"currentFwVersion": self.installed}
        await self._report({"mcu": self._mcu_section(), "firmware": fw}, now=True)
        # A failure caused by the unplug is worth retrying now that it is back.
        self._gave_up = {s for s in self._gave_up if s not in self._transient}
        self._cancel_retry_timer()
        self._evaluate()

    # ------------------------------------------------------------ desired state

    def _parsed_desired(self) -> DesiredFirmware | None:
        raw = self.link.desired.get("firmware")
        if raw is None:
            return None
        try:
            return parse_desired(raw, allowed_schemes=self.allowed_schemes)
        except DesiredFirmwareError:
            return None

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
        sig = _signature(desired)
        self._note_operator_retry(desired.retry)
        running = self._update is not None and not self._update.done()
        installed = self.installed
        if same_version(installed, desired.fwVersion) and not on_trial(self.facts):
            self._cancel_retry_timer()
            if running:
                self._stand_down(desired.fwVersion)
                return
            journal = self.env.journal
            journal.best_effort(lambda: journal.finish_update(self.uid, Outcome.CURRENT))
            self._spawn_report({"firmware": current(installed)})  # clears a stale error
            return
        if running:
            if sig == self._update_sig:
                return
            self.log.info("desired firmware changed during an update; restarting with %s",
                          desired.fwVersion)  # fmt: skip
            assert self._update is not None
            self._update.cancel()
        elif sig in self._gave_up or not self.connected:
            return
        elif self._retry_timer is not None and self._retry_sig == sig:
            return  # its automatic retry is already scheduled
        self._cancel_retry_timer()
        previous = self._update
        self._update_sig = sig
        self._update = asyncio.create_task(self._run_update(desired, sig, previous))

    def _note_operator_retry(self, counter: int) -> None:
        if self._operator_retry is not None and counter != self._operator_retry:
            self.log.info("operator retry (desired retry %d): failed updates run again", counter)
            self._gave_up.clear()
            self._transient.clear()
            self._failures.clear()
            self._cancel_retry_timer()
        self._operator_retry = counter

    def _stand_down(self, installed: str) -> None:
        """Desired went back to the installed version mid-update: stop, flash nothing."""
        self.log.info("desired firmware is the installed %s again; stopping the update",
                      installed)  # fmt: skip
        task = self._update
        assert task is not None
        self._update_sig = None  # so the run does not book itself as aborted
        task.cancel()
        self._update = asyncio.create_task(self._after_stand_down(task))

    async def _after_stand_down(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        journal = self.env.journal
        journal.best_effort(
            lambda: journal.finish_update(
                self.uid, Outcome.CANCELLED, error_code=GatewayCode.SUPERSEDED
            )
        )
        await self._refresh_info(restart_app=True)  # a cut transfer leaves the bootloader up
        fw = on_trial_report(self.installed) if on_trial(self.facts) else current(self.installed)
        await self._report({"firmware": fw, "mcu": {"slots": self._slots()}}, now=True)
        # The MCU may have moved on meanwhile (a trial boot that confirmed): look again.
        asyncio.get_running_loop().call_soon(self._evaluate)

    def _spawn_report(self, patch: dict[str, Any]) -> None:
        task = asyncio.create_task(self._report(patch, now=True))
        self._tasks = [t for t in self._tasks if not t.done()] + [task]

    # ------------------------------------------------------------ automatic retries

    def _cancel_retry_timer(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = self._retry_sig = None

    def _schedule_retry(self, sig: Signature, delay: float, room: int | None = None) -> None:
        self._cancel_retry_timer()
        self._retry_sig = sig
        self._retry_timer = asyncio.create_task(self._retry_after(delay, room), name="retry timer")

    async def _retry_after(self, delay: float, room: int | None = None) -> None:
        """Wait out the backoff; with ``room`` (bytes a full disk must free), end early
        once the download cache's disk has them: no event says so, hence the polling."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(left if room is None else min(left, _ROOM_POLL_S))
            if room is not None and self.env.downloader.cache.free_bytes() >= room:
                self.log.info("disk space is back (%d bytes needed): retrying now", room)
                break
        self._retry_timer = self._retry_sig = None
        self._evaluate()

    # ------------------------------------------------------------ one update

    async def _run_update(
        self, desired: DesiredFirmware, sig: Signature, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous  # its session must release the port first
        run = UpdateRun(
            self.env, uid=self.uid, desired=desired, facts=self.facts, driver=self.session,
            report=self._report, log=self.log,
        )  # fmt: skip
        journal = self.env.journal
        try:
            result = await run.run()
        except asyncio.CancelledError:
            if not self._closing and self._update_sig == sig:
                # Aborted (method or unplug), not superseded: say so in the twin.
                journal.best_effort(
                    lambda: journal.finish_update(
                        self.uid, Outcome.CANCELLED, error_code=GatewayCode.ABORTED
                    )
                )
            raise
        except UpdateFailed as exc:
            await self._failed(desired, sig, run.started, exc, app_erased=run.app_erased)
            return
        except Exception as exc:  # a bug must not take the other MCUs down
            self.log.exception("update crashed")
            failure = UpdateFailed(
                GatewayCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", run.phase.value
            )
            await self._failed(desired, sig, run.started, failure)
            return
        if result.facts is not None:
            self.facts = result.facts
        journal.best_effort(lambda: journal.finish_update(self.uid, result.outcome))
        journal.best_effort(lambda: journal.set_slots(self.uid, self._slots()))
        self._failures.pop(sig, None)
        if result.outcome is not Outcome.CURRENT:
            self._gave_up.add(sig)  # rolled back: the app itself is bad
        if result.flash is not None:
            self.last_result = {
                "version": desired.fwVersion,
                "seconds": result.flash.seconds,
                "transfer_seconds": result.flash.transfer_seconds,
                "bytes": result.flash.bytes,
                "resumed_from": result.flash.resumed_from,
                "began_at": run.began_at,
                "first_data_at": run.first_data_at,
            }
        outcome = result.outcome
        self.log.phase(outcome.value).info("update to %s: %s", desired.fwVersion, outcome.value)
        installed = self.installed
        patch = final_report(
            outcome, desired=desired, started=run.started, installed=installed, flash=result.flash
        )
        patch["firmware"]["nextRetryTime"] = None
        patch["mcu"] = {"slots": self._slots()}
        await self._report(patch, now=True)

    async def _failed(
        self,
        desired: DesiredFirmware,
        sig: Signature,
        started: str,
        exc: UpdateFailed,
        *,
        app_erased: bool = False,
    ) -> None:
        ended = utc_now()  # the failure's own time, whatever the INFO re-read below costs
        self.log.phase(exc.phase).error(
            "update to %s failed: %s %s", desired.fwVersion, exc.code, exc.message
        )
        failures = self._failures[sig] = self._failures.get(sig, 0) + 1
        transient = exc.kind.transient
        delay = retry_delay(exc.kind, failures, self.retry_policy, self._rng)
        local = exc.code == ReasonCode.STORAGE_FULL and delay is None
        if local:
            # The gateway's own disk, freed on the box rather than in the twin: keep
            # looking at the longest interval, never give up (issue 17.1).
            delay = self.retry_policy.backoff.longest(self._rng)
        if transient:
            self._transient.add(sig)  # the link, the network or the MCU: a reattach may cure it
        else:
            self._transient.discard(sig)
        journal = self.env.journal
        journal.best_effort(
            lambda: journal.finish_update(
                self.uid, Outcome.ERROR, error_code=exc.code, message=exc.message
            )
        )
        if not await self._refresh_info(restart_app=True) and app_erased:
            self.facts = reconcile_app_erased(self.facts)  # silent now: say what is known
        installed = self.installed
        patch = final_report(
            Outcome.ERROR, desired=desired, started=started, installed=installed, failure=exc
        )
        patch["mcu"] = {"slots": self._slots()}
        fw = patch["firmware"]
        fw["lastFwUpdateEndTime"] = ended
        limit = self.retry_policy.attempts
        if delay is not None:
            at = utc_iso(time.time() + delay)
            plan = f"retry {failures + 1}" + ("" if local else f" of {limit}")
            fw["fwUpdateSubstatus"] += f"; {plan} in {delay:.0f} s"
            fw["nextRetryTime"] = at
            room = None
            if exc.code == ReasonCode.STORAGE_FULL:
                room = (desired.fwPackageSize or 0) + _JOURNAL_ROOM
                fw["fwUpdateSubstatus"] += ", sooner once the disk has room"
            self._schedule_retry(sig, delay, room)
        else:
            self._gave_up.add(sig)
            fw["nextRetryTime"] = None
            why = "gave up" if transient else "not retried automatically"
            fw["fwUpdateSubstatus"] += (
                f"; {why} after {failures} attempt(s); change the desired retry to try again"
            )
        await self._report(patch, now=True)

    async def _refresh_info(self, *, restart_app: bool = False) -> bool:
        """Re-read the MCU's facts; after a failed or aborted flash, start the old app first.

        A cut transfer leaves the MCU in its bootloader with the installed image
        intact (and, with ``resume``, the partial one kept for next time). True
        if the MCU answered: its facts are then what it said, even when starting
        its app failed (a single-slot MCU whose app an unfinished install erased).
        """
        answered = False
        try:
            async with asyncio.timeout(15 + self.options.confirm_timeout_s):
                async with self.session() as driver:
                    self.facts = facts = await driver.identify()
                    answered = True
                    if restart_app and facts.in_bootloader:
                        self.facts = await driver.reboot()
        except (DriverError, TimeoutError, OSError) as exc:
            self.log.warning("could not re-read the MCU's facts: %s", exc)
        return answered

    # ------------------------------------------------------------ direct methods

    async def _method_get_info(self, payload: Any) -> tuple[int, Any]:
        from gateway.facts import facts_dict

        if self._port_lock.locked():
            return 200, {**facts_dict(self.facts), "busy": True}
        await self._refresh_info()
        return 200, {**facts_dict(self.facts), "busy": False}

    async def _method_reboot(self, payload: Any) -> tuple[int, Any]:
        if self._update is not None and not self._update.done():
            return 409, {"error": "an update is in progress; call abortUpdate first"}
        try:
            async with asyncio.timeout(10):
                async with self.session() as driver:
                    self.facts = await driver.reboot()
        except (DriverError, TimeoutError) as exc:
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
                    "currentFwVersion": self.installed,
                    "lastFwUpdateEndTime": utc_now(),
                    "nextRetryTime": None,
                    "error": error_section(
                        GatewayCode.ABORTED,
                        "aborted by the abortUpdate method",
                        Phase.APPLYING.value,
                    ),
                }
            },
            now=True,
        )
        return 200, {"aborted": True}

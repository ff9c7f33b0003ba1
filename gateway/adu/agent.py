"""One MCU as an Azure Device Update device: the ADU agent contract over the update path.

:class:`AduMcuAgent` is an :class:`gateway.agent.McuAgent` whose master is ADU's
``deviceUpdate.service`` desired value instead of the twin's ``firmware`` section.
For each ProcessDeployment (action 3) it acknowledges, reports DeploymentInProgress,
applies a root key package, verifies the signature chain and manifest hash, checks
compatibility, then hands the one file of its step to the existing update path
(download with size and hash from the signed manifest, the package's own signature,
the driver, resume, confirm or roll back, the journal), which keeps reporting the
``firmware`` section. It ends with state Idle and ``installedUpdateId`` (result 700),
or Failed (255) with the result codes of :mod:`gateway.adu.codes`. Cancel (255)
stops the run and drops the staged image through the driver's ``abort``. A new
``retryTimestamp`` for the same workflow runs it again.

The workflow rules follow the reference agent (github Azure/iot-hub-device-update,
src/agent/adu_core_interface/src/adu_core_interface.c and src/utils/workflow_utils).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.compat import parse_compat
from firmware.errors import VerificationError
from firmware.manifest import parse_version
from firmware.twin import DesiredFirmware
from gateway.adu import codes
from gateway.adu.codes import Action, AgentState, ResultCode
from gateway.adu.contract import (
    IN_PROGRESS,
    InstallResult,
    ack,
    agent_report,
    component,
    startup_report,
)
from gateway.adu.errors import AduError, AduManifestError
from gateway.adu.fetch import fetch_small
from gateway.adu.importmanifest import HANDLER
from gateway.adu.manifest import (
    FileEntry,
    UpdateId,
    UpdateManifest,
    VerifiedService,
    Workflow,
    parse_workflow,
    verify_service,
)
from gateway.adu.rootkeys import MAX_PACKAGE_BYTES, TrustedRoots
from gateway.adu.settings import AduSettings
from gateway.adu.state import AduRecord, AduStateStore
from gateway.agent import McuAgent
from gateway.journal import Outcome
from gateway.reported import utc_now
from gateway.update import UpdateFailed, UpdateRun, final_report
from protocols.driver import DriverError


@dataclass(frozen=True)
class AduContext:
    """What every ADU agent of a gateway shares."""

    settings: AduSettings
    root_keys: TrustedRoots  # built-in keys and the root key package in force
    state: AduStateStore
    ca_file: Path | None = None  # extra trust anchor for downloads (root key packages)


class _Cancelled(Exception):
    """The running deployment was cancelled by ADU (action 255)."""


class AduMcuAgent(McuAgent):
    def __init__(self, *, adu: AduContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.adu = adu
        self.record: AduRecord = adu.state.load(self.uid)
        self._key: tuple[str, str | None] | None = self.record.key if self.record.finished else None
        self._cancel_requested = False
        self._cancel_key: tuple[str, int] | None = (
            None  # (workflow id, $version) of the last cancel
        )
        self._acked = 0

    # ------------------------------------------------------------ identity

    @property
    def manufacturer(self) -> str:
        try:
            return parse_compat(self.facts.compat).manufacturer
        except VerificationError:  # a malformed compat string: ADU still needs a value
            return "unknown"

    def installed_update_id(self) -> str | None:
        """The ADU update the MCU runs: remembered, else the factory image's (``[adu]``)."""
        rec, installed = self.record, self.installed
        if installed is None:
            return None
        if rec.installed_update_id and rec.installed_version == installed:
            return rec.installed_update_id
        provider = self.adu.settings.provider
        if provider is None:
            return None
        name = self.adu.settings.update_name(self.facts.model)
        return UpdateId(provider, name, installed).as_json()

    # ------------------------------------------------------------ lifecycle

    async def _main(self) -> None:
        await self._connect_with_retry()
        self.env.journal.upsert_mcu(
            self.uid,
            device_id=self.device_id,
            model=self.facts.model,
            port=self.port,
            slots=self._slots(),
        )
        await self._report_startup()
        await self._report_adu_startup()
        self._evaluate()
        async for patch in self.link.desired_patches():
            if "deviceUpdate" in patch:
                self._evaluate()
            elif "firmware" in patch:
                self.log.warning("desired firmware ignored: this MCU takes updates from ADU")

    async def _report_adu_startup(self) -> None:
        agent = startup_report(self.manufacturer, self.facts.model)
        rec = self.record
        if rec.finished and rec.agent:
            agent.update(rec.agent)  # the last deployment's outcome, as reported then
        else:
            agent["state"] = int(AgentState.IDLE)
        installed = self.installed_update_id()
        if installed is not None:
            agent["installedUpdateId"] = installed
        await self._report(component(agent=agent), now=True)

    def _service(self) -> dict[str, Any] | None:
        du = self.link.desired.get("deviceUpdate")
        value = du.get("service") if isinstance(du, dict) else None
        return value if isinstance(value, dict) else None

    def _parsed_desired(self) -> DesiredFirmware | None:
        """The firmware ADU asks for, so start-up reconciles an interrupted run with it."""
        value = self._service()
        if value is None:
            return None
        try:
            verified = verify_service(value, self.adu.root_keys.store)
            if verified.workflow.action != Action.PROCESS_DEPLOYMENT:
                return None
            return _desired(verified, *_our_step(verified.manifest, self.facts.model))
        except AduError:
            return None

    # ------------------------------------------------------------ desired service

    def _evaluate(self) -> None:
        if self._closing:
            return
        value = self._service()
        if value is None:
            return
        try:
            workflow = parse_workflow(value.get("workflow"))
        except AduManifestError as exc:
            self.log.warning("deviceUpdate.service ignored: %s", exc.message)
            return
        version = int(self.link.desired.get("$version", 0))
        if version != self._acked:
            self._acked = version
            self._spawn_report(ack(value, version))
        running = self._update is not None and not self._update.done()
        if workflow.action == Action.CANCEL:
            if running:
                self._cancel_requested = True
                assert self._update is not None
                self._update.cancel()
            elif self._cancel_key != (workflow.id, version):
                self._cancel_key = (workflow.id, version)
                # Nothing runs: Idle with result 200, as the reference agent answers a
                # cancel it has nothing for (agent_workflow.c, "reporting Idle state").
                idle = agent_report(
                    AgentState.IDLE,
                    workflow=workflow,
                    result=InstallResult(ResultCode.IDLE_SUCCESS),
                    installed_update_id=self.installed_update_id(),
                )
                self._spawn_report(component(agent=idle))
            return
        if workflow.action != Action.PROCESS_DEPLOYMENT:
            self.log.warning("deviceUpdate action %d is not supported", workflow.action)
            return
        key = (workflow.id, workflow.retry_timestamp)
        if key == self._key or not self.connected:
            return  # running or done; a new retryTimestamp runs it again
        self._key = key
        previous = self._update if running else None
        if previous is not None:
            self.log.info("ADU deployment %s replaces the running one", workflow.id)
            previous.cancel()
        self._cancel_requested = False
        self._update = asyncio.create_task(self._deploy(value, workflow, previous))

    async def _deploy(
        self, value: dict[str, Any], workflow: Workflow, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous  # its session must release the port first
        rec = self.record
        rec.workflow_id, rec.retry_timestamp, rec.finished = (
            workflow.id,
            workflow.retry_timestamp,
            False,
        )
        self.adu.state.save(self.uid, rec)
        self.log.info("ADU deployment %s: started", workflow.id)
        await self._report_agent(AgentState.DEPLOYMENT_IN_PROGRESS, workflow, IN_PROGRESS)
        try:
            verified = await self._verified(value)
            self._check_compatibility(verified.manifest)
            step_file = _our_step(verified.manifest, self.facts.model)
            desired = _desired(verified, *step_file)
            update_id = verified.manifest.update_id.as_json()
            if self.installed == desired.fwVersion and self.installed_update_id() == update_id:
                result = InstallResult(ResultCode.APPLY_SUCCESS, 0, "already installed")
                await self._finish(AgentState.IDLE, workflow, result, update_id)
                return
            await self._run(desired, workflow, update_id)
        except asyncio.CancelledError:
            if self._closing:
                raise  # parked: the restarted gateway resumes this deployment
            if self._cancel_requested:
                await self._cancelled(workflow)
                return
            result = InstallResult(ResultCode.FAILURE, codes.erc_for("ABORTED"), "ABORTED: stopped")
            await self._finish(AgentState.FAILED, workflow, result, self.installed_update_id())
            raise
        except AduError as exc:
            self.log.error("ADU deployment %s refused: %s", workflow.id, exc.message)
            result = InstallResult(ResultCode.FAILURE, exc.erc, exc.message)
            await self._finish(AgentState.FAILED, workflow, result, self.installed_update_id())

    async def _verified(self, value: dict[str, Any]) -> VerifiedService:
        roots = self.adu.root_keys
        url = value.get("rootKeyPackageUrl")
        if isinstance(url, str) and url:
            # The agent updates its root keys before it trusts the manifest (adu_core_interface.c).
            raw = await fetch_small(url, limit=MAX_PACKAGE_BYTES, ca_file=self.adu.ca_file)
            return verify_service(value, roots.update(raw))
        return verify_service(value, roots.store)

    def _check_compatibility(self, manifest: UpdateManifest) -> None:
        mine = {"manufacturer": self.manufacturer, "model": self.facts.model}
        for entry in manifest.compatibility:
            if all(mine.get(k) == v for k, v in entry.items()):
                return
        raise AduManifestError(
            f"update is for {[dict(c) for c in manifest.compatibility]}, this MCU is {mine}",
            codes.ERC_STEP_COMPATIBILITY_FAILED,
        )

    async def _run(self, desired: DesiredFirmware, workflow: Workflow, update_id: str) -> None:
        run = UpdateRun(
            self.env,
            uid=self.uid,
            desired=desired,
            facts=self.facts,
            driver=self.session,
            report=self._report,
            log=self.log,
        )
        journal = self.env.journal
        try:
            result = await run.run()
        except asyncio.CancelledError:
            if not self._closing:
                journal.finish_update(self.uid, Outcome.CANCELLED, error_code="ABORTED")
            raise
        except UpdateFailed as exc:
            await self._run_failed(desired, workflow, run.started, exc)
            return
        except Exception as exc:  # a bug must not take the other MCUs down
            self.log.exception("update crashed")
            failure = UpdateFailed(
                "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", run.phase.value
            )
            await self._run_failed(desired, workflow, run.started, failure)
            return
        if result.facts is not None:
            self.facts = result.facts
        journal.finish_update(self.uid, result.outcome)
        journal.set_slots(self.uid, self._slots())
        patch = final_report(
            result.outcome,
            desired=desired,
            started=run.started,
            installed=self.installed,
            flash=result.flash,
        )
        patch["mcu"] = {"slots": self._slots()}
        await self._report(patch, now=True)
        if result.outcome is Outcome.CURRENT:
            self.record.installed_update_id = update_id
            self.record.installed_version = self.installed
            done = InstallResult(ResultCode.APPLY_SUCCESS)
            self.log.info("ADU deployment %s: installed %s", workflow.id, desired.fwVersion)
            await self._finish(AgentState.IDLE, workflow, done, update_id)
            return
        code = "ROLLED_BACK"
        details = (
            f"{code}: {desired.fwVersion} did not confirm; the bootloader restored {self.installed}"
        )
        failed = InstallResult(ResultCode.FAILURE, codes.erc_for(code), details)
        await self._finish(AgentState.FAILED, workflow, failed, self.installed_update_id())

    async def _run_failed(
        self, desired: DesiredFirmware, workflow: Workflow, started: str, exc: UpdateFailed
    ) -> None:
        ended = utc_now()
        self.log.phase(exc.phase).error(
            "ADU deployment %s failed: %s %s", workflow.id, exc.code, exc.message
        )
        self.env.journal.finish_update(
            self.uid, Outcome.ERROR, error_code=exc.code, message=exc.message
        )
        await self._refresh_info(restart_app=True)
        patch = final_report(
            Outcome.ERROR, desired=desired, started=started, installed=self.installed, failure=exc
        )
        patch["firmware"]["lastFwUpdateEndTime"] = ended
        await self._report(patch, now=True)
        result = InstallResult(
            ResultCode.FAILURE, codes.erc_for(exc.code), f"{exc.code}: {exc.message}"
        )
        await self._finish(AgentState.FAILED, workflow, result, self.installed_update_id())

    async def _cancelled(self, workflow: Workflow) -> None:
        """Cancel: drop the staged image through the driver, start the installed app."""
        self.log.info("ADU deployment %s: cancelled", workflow.id)
        try:
            async with asyncio.timeout(15 + self.options.confirm_timeout_s):
                async with self.session() as driver:
                    self.facts = await driver.abort()
        except (DriverError, TimeoutError, OSError) as exc:  # the MCU keeps its bootable image
            self.log.warning("abort after cancel failed: %s", exc)
            await self._refresh_info(restart_app=True)
        await self._report(
            {
                "firmware": {
                    "fwUpdateStatus": "current",
                    "fwUpdateSubstatus": "update cancelled by ADU",
                    "pendingFwVersion": None,
                    "currentFwVersion": self.installed,
                    "lastFwUpdateEndTime": utc_now(),
                    "error": None,
                },
                "mcu": {"slots": self._slots()},
            },
            now=True,
        )
        cancel = Workflow(int(Action.CANCEL), workflow.id, workflow.retry_timestamp)
        result = InstallResult(ResultCode.FAILURE_CANCELLED, 0, "cancelled")
        await self._finish(AgentState.IDLE, cancel, result, self.installed_update_id())

    async def _report_agent(
        self,
        state: AgentState,
        workflow: Workflow,
        result: InstallResult,
        installed: str | None = None,
    ) -> dict[str, Any]:
        agent = agent_report(state, workflow=workflow, result=result, installed_update_id=installed)
        await self._report(component(agent=agent), now=True)
        return agent

    async def _finish(
        self, state: AgentState, workflow: Workflow, result: InstallResult, installed: str | None
    ) -> None:
        agent = await self._report_agent(state, workflow, result, installed)
        rec = self.record
        rec.finished, rec.agent = True, agent
        self.adu.state.save(self.uid, rec)


def _our_step(manifest: UpdateManifest, model: str) -> tuple[str, FileEntry]:
    """The one step this agent runs: handler ``HANDLER``, and this MCU model's file of it.

    A step has one file (one model's package), or one per model with
    ``handlerProperties.files`` naming each model's file (a bundle).
    """
    steps = [s for s in manifest.steps if s.handler is not None]
    if len(manifest.steps) != 1 or len(steps) != 1 or steps[0].handler != HANDLER:
        handlers = [s.handler or "reference" for s in manifest.steps]
        raise AduManifestError(
            f"this agent runs one {HANDLER} step, the update has {handlers}",
            codes.ERC_HANDLER_NOT_FOUND,
        )
    step = steps[0]
    if step.files_by_model:
        name = step.files_by_model.get(model)
        ids = [f for f in step.files if f in manifest.files and manifest.files[f].file_name == name]
    else:
        ids = list(step.files)
    if len(ids) != 1 or ids[0] not in manifest.files:
        raise AduManifestError(
            f"the {HANDLER} step has no single file for model {model!r:.40}",
            codes.ERC_BAD_FILES_OR_FILEURLS,
        )
    criteria = step.installed_criteria
    if criteria is None:
        raise AduManifestError("the step has no installedCriteria", codes.ERC_NO_INSTALLEDCRITERIA)
    try:
        parse_version(criteria)
    except ValueError as exc:
        raise AduManifestError(
            f"installedCriteria {criteria!r:.40} is not a firmware version",
            codes.ERC_NO_INSTALLEDCRITERIA,
        ) from exc
    return criteria, manifest.files[ids[0]]


def _desired(verified: VerifiedService, version: str, file: FileEntry) -> DesiredFirmware:
    """The update path's input: the file's URL, with size and hash from the signed manifest."""
    url = verified.file_urls.get(file.file_id)
    if not url:
        raise AduManifestError(
            f"fileUrls has no URL for file {file.file_id}", codes.ERC_BAD_FILES_OR_FILEURLS
        )
    return DesiredFirmware(
        fwVersion=version,
        fwPackageURI=url,
        fwPackageCheckValue=file.sha256_hex,
        fwPackageSize=file.size,
        # The operator chose this signed update for this group, older or not (ADU's
        # rollback policy deploys the previous one); the package's minimum version holds.
        allowDowngrade=True,
    )

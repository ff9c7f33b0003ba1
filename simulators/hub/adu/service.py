"""The local Device Update instance: updates, groups, device classes, deployments.

It keeps what ADU keeps (imported updates and their files, deployments) in the
state directory, derives devices, classes and groups from the hub's twins
(:mod:`simulators.hub.adu.fleet`), and drives devices the way ADU does: it writes
``deviceUpdate.service`` (signed with the emulator's test keys,
:mod:`simulators.hub.adu.signer`) into the twins of a deployment's devices and reads
their reported ``deviceUpdate.agent`` back into device states and compliance.
Deployment semantics follow device-update-deployments.md (one active deployment
per group, start time, cancel, retry of failed devices, cloud-initiated rollback when
the failure thresholds are both met); limits follow :mod:`simulators.hub.adu.limits`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from simulators.hub.adu import importer, limits
from simulators.hub.adu.catalog import UpdateCatalog, update_key, utc
from simulators.hub.adu.errors import AduRequestError
from simulators.hub.adu.fleet import AduDevice, adu_devices, compatible
from simulators.hub.adu.signer import TestSigner

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
#: Device states in a deployment (DeploymentDeviceState in the REST API).
SUCCEEDED, IN_PROGRESS, FAILED, CANCELED = "Succeeded", "InProgress", "Failed", "Canceled"


class Twins(Protocol):
    """What the service needs of the hub: twins to read, desired values to write."""

    def adu_twins(self) -> Iterable[tuple[str, JsonObject, JsonObject]]: ...

    def model_ids(self) -> dict[str, str]: ...

    def write_desired(self, device_id: str, patch: JsonObject) -> None: ...


def parse_time(text: Any) -> float:
    if not isinstance(text, str):
        raise AduRequestError(400, "BadRequest", "startDateTime is required")
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AduRequestError(
            400, "BadRequest", f"startDateTime {text!r:.40} is not ISO 8601"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


@dataclass
class Settings:
    instance_id: str
    files_base_url: str  # where devices download files: https://host:port/adu-files
    state_dir: Path
    ca_file: Path | None = None  # extra trust for import downloads


class AduService:
    def __init__(
        self,
        twins: Twins,
        settings: Settings,
        signer: TestSigner,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.twins = twins
        self.settings = settings
        self.signer = signer
        self.clock = clock
        self._path = settings.state_dir / "adu.json"
        data = self._load()
        self.catalog = UpdateCatalog(
            data,
            settings.state_dir / "files",
            instance_id=settings.instance_id,
            save=self.save,
            ca_file=settings.ca_file,
            clock=clock,
        )
        self.updates = self.catalog.updates  # the same dict: deployments read it
        self.deployments: dict[str, JsonObject] = data.get("deployments", {})  # by group/id
        self.classes: dict[str, JsonObject] = data.get("classes", {})
        self.groups: dict[str, JsonObject] = data.get("groups", {})
        self._deployment_writes: deque[float] = deque()

    # ------------------------------------------------------------ persistence

    def _load(self) -> JsonObject:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        data = {
            "updates": self.catalog.updates,
            "operations": self.catalog.operations,
            "deployments": self.deployments,
            "classes": self.classes,
            "groups": self.groups,
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self._path)

    async def close(self) -> None:
        await self.catalog.close()

    def delete_update(self, provider: str, name: str, version: str) -> None:
        live = {
            update_key(d["update"]["updateId"])
            for d in self.deployments.values()
            if not d.get("isCanceled")
        }
        self.catalog.delete_update(provider, name, version, live)

    # ------------------------------------------------------------ devices, classes, groups

    def devices(self) -> list[AduDevice]:
        """The ADU devices now, registering new classes and groups within the limits."""
        found = adu_devices(self.twins.adu_twins(), self.twins.model_ids())
        out, changed = [], False
        for d in found:
            if d.class_id not in self.classes:
                if len(self.classes) >= limits.MAX_DEVICE_CLASSES:
                    log.warning(
                        "device %s: device class limit (%d) reached",
                        d.device_id,
                        limits.MAX_DEVICE_CLASSES,
                    )
                    continue
                self.classes[d.class_id] = {"compat": dict(d.compat), "model": d.contract_model}
                changed = True
            if d.group_id not in self.groups:
                if len(self.groups) >= limits.MAX_GROUPS:
                    log.warning(
                        "device %s: group limit (%d) reached", d.device_id, limits.MAX_GROUPS
                    )
                    continue
                self.groups[d.group_id] = {
                    "createdDateTime": utc(self.clock()),
                    "groupType": "IoTHubTag" if d.tagged else "DefaultDeviceClass",
                }
                changed = True
            out.append(d)
        if changed:
            self.save()
        return out

    def group(self, group_id: str) -> JsonObject:
        record = self.groups.get(group_id)
        if record is None:
            raise AduRequestError(404, "GroupNotFound", f"no group {group_id!r:.64}")
        return record

    def best_update(self, class_id: str) -> JsonObject | None:
        compat = self.classes.get(class_id, {}).get("compat", {})
        fits = [
            u
            for u in self.updates.values()
            if u.get("isDeployable", True) and compatible(compat, u["compatibility"])
        ]
        if not fits:
            return None
        return max(fits, key=lambda u: importer.version_key(u["updateId"]["version"]))

    # ------------------------------------------------------------ deployments

    def _throttle_deployment_write(self) -> None:
        now = self.clock()
        window = self._deployment_writes
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limits.DEPLOYMENT_WRITES_PER_MINUTE:
            raise AduRequestError(
                429,
                "TooManyRequests",
                f"at most {limits.DEPLOYMENT_WRITES_PER_MINUTE} deployment writes a minute",
            )
        window.append(now)

    def put_deployment(self, group_id: str, deployment_id: str, body: Any) -> JsonObject:
        self.devices()  # registers groups of devices that just appeared
        self.group(group_id)
        if not isinstance(body, dict):
            raise AduRequestError(400, "BadRequest", "the deployment is not a JSON object")
        if body.get("deploymentId") != deployment_id or body.get("groupId") != group_id:
            raise AduRequestError(400, "BadRequest", "deploymentId and groupId must match the URL")
        start = parse_time(body.get("startDateTime"))
        uid = importer.update_id((body.get("update") or {}).get("updateId"), "update.updateId")
        update = self.catalog.update(uid["provider"], uid["name"], uid["version"])
        rollback = body.get("rollbackPolicy")
        if rollback is not None:
            ruid = importer.update_id(
                (rollback.get("update") or {}).get("updateId"), "rollbackPolicy.update.updateId"
            )
            self.catalog.update(ruid["provider"], ruid["name"], ruid["version"])
        key = f"{group_id}/{deployment_id}"
        if key not in self.deployments and len(self.deployments) >= limits.MAX_DEPLOYMENTS:
            raise AduRequestError(
                409,
                "DeploymentLimitExceeded",
                f"an instance holds at most {limits.MAX_DEPLOYMENTS} deployments",
            )
        active = [
            d for d in self.deployments.values() if self._active(d) and d["groupId"] != group_id
        ]
        if len(active) >= limits.MAX_ACTIVE_DEPLOYMENTS:
            raise AduRequestError(
                409,
                "ActiveDeploymentLimitExceeded",
                f"at most {limits.MAX_ACTIVE_DEPLOYMENTS} active deployments",
            )
        self._throttle_deployment_write()
        for other in self.deployments.values():  # one active deployment per group
            if other["groupId"] == group_id and other["deploymentId"] != deployment_id:
                other["_inactive"] = True
        record = {
            "deploymentId": deployment_id,
            "groupId": group_id,
            "startDateTime": body["startDateTime"],
            "update": {"updateId": update["updateId"]},
            "isCanceled": False,
            "isRetried": False,
            "isCloudInitiatedRollback": False,
            **({"rollbackPolicy": rollback} if rollback is not None else {}),
            "_start": start,
            "_workflow": str(uuid.uuid4()),
            "_retries": {},  # device id -> retryTimestamp
            "_rollback": [],  # device ids sent the rollback update
            "_sent": {},  # device id -> the workflow key last written to it
        }
        self.deployments[key] = record
        self.save()
        self.tick()
        return self.public_deployment(record)

    def deployment(self, group_id: str, deployment_id: str) -> JsonObject:
        record = self.deployments.get(f"{group_id}/{deployment_id}")
        if record is None:
            raise AduRequestError(404, "DeploymentNotFound", f"no deployment {deployment_id!r:.64}")
        return record

    def delete_deployment(self, group_id: str, deployment_id: str) -> None:
        self.deployment(group_id, deployment_id)
        self._throttle_deployment_write()
        del self.deployments[f"{group_id}/{deployment_id}"]
        self.save()

    @staticmethod
    def public_deployment(record: JsonObject) -> JsonObject:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    def _active(self, record: JsonObject) -> bool:
        return not record.get("isCanceled") and not record.get("_inactive")

    def subgroups(self, record: JsonObject, devices: list[AduDevice]) -> dict[str, list[AduDevice]]:
        """Device class subgroups of the deployment's group that the update fits."""
        update = self.updates.get(update_key(record["update"]["updateId"]))
        out: dict[str, list[AduDevice]] = {}
        for d in devices:
            if (
                d.group_id == record["groupId"]
                and update
                and compatible(d.compat, update["compatibility"])
            ):
                out.setdefault(d.class_id, []).append(d)
        return out

    def cancel(self, group_id: str, deployment_id: str, class_id: str | None = None) -> JsonObject:
        record = self.deployment(group_id, deployment_id)
        self._throttle_deployment_write()
        record["isCanceled"] = True
        for d in self._targets(record, class_id):
            self._write(d, record, action=255)
        self.save()
        return self.public_deployment(record)

    def retry(self, group_id: str, deployment_id: str, class_id: str | None = None) -> JsonObject:
        record = self.deployment(group_id, deployment_id)
        if not self._active(record):
            raise AduRequestError(
                409, "DeploymentNotActive", "only an active deployment is retried"
            )
        self._throttle_deployment_write()
        record["isRetried"] = True
        stamp = utc(self.clock())
        for d in self._targets(record, class_id):
            if self.device_state(record, d) == FAILED:
                record["_retries"][d.device_id] = stamp
        self.save()
        self.tick()
        return self.public_deployment(record)

    def _targets(self, record: JsonObject, class_id: str | None) -> list[AduDevice]:
        groups = self.subgroups(record, self.devices())
        if class_id is not None:
            return groups.get(class_id, [])
        return [d for members in groups.values() for d in members]

    def _service_value(self, record: JsonObject, device_id: str, action: int) -> JsonObject:
        rolled = device_id in record["_rollback"]
        uid = (
            record["rollbackPolicy"]["update"]["updateId"]
            if rolled
            else record["update"]["updateId"]
        )
        update = self.updates[update_key(uid)]
        manifest = update["_deviceManifest"]
        workflow: JsonObject = {
            "action": action,
            "id": record["_workflow"] + ("-rollback" if rolled else ""),
        }
        retry = record["_retries"].get(device_id)
        workflow["retryTimestamp"] = retry  # null clears a previous workflow's
        base = self.settings.files_base_url
        return {
            "workflow": workflow,
            "updateManifest": manifest,
            "updateManifestSignature": self.signer.sign_manifest(manifest),
            "fileUrls": {
                f[
                    "file_id"
                ]: f"{base}/{importer.ImportedFile(**f).sha256_hex}/{quote(f['file_name'])}"
                for f in update["_files"]
            },
            "rootKeyPackageUrl": f"{base}/rootkeypackage.json",
        }

    def _write(self, device: AduDevice, record: JsonObject, action: int = 3) -> None:
        value = self._service_value(record, device.device_id, action)
        key = json.dumps(value["workflow"], sort_keys=True)
        if record["_sent"].get(device.device_id) == key:
            return
        record["_sent"][device.device_id] = key
        self.twins.write_desired(device.device_id, {"deviceUpdate": {"__t": "c", "service": value}})

    def tick(self) -> None:
        """Apply due deployments to their devices (late joiners too) and rollback policies."""
        devices = self.devices()
        now = self.clock()
        changed = False
        for record in self.deployments.values():
            if not self._active(record) or record["_start"] > now:
                continue
            for members in self.subgroups(record, devices).values():
                for d in members:
                    before = dict(record["_sent"])
                    self._write(d, record)
                    changed |= before != record["_sent"]
                changed |= self._maybe_roll_back(record, members)
        if changed:
            self.save()

    def _maybe_roll_back(self, record: JsonObject, members: list[AduDevice]) -> bool:
        policy = record.get("rollbackPolicy")
        if not policy or not members:
            return False
        failed = [
            d
            for d in members
            if self.device_state(record, d) == FAILED and d.device_id not in record["_rollback"]
        ]
        total_failed = len(failed) + len(record["_rollback"])
        threshold = policy.get("failure") or {}
        pct = 100.0 * total_failed / len(members)
        if (
            not failed
            or total_failed < int(threshold.get("devicesFailedCount", 1))
            or pct < float(threshold.get("devicesFailedPercentage", 0))
        ):
            return False
        record["isCloudInitiatedRollback"] = True
        for d in failed:
            record["_rollback"].append(d.device_id)
            self._write(d, record)
        return True

    # ------------------------------------------------------------ states

    def device_state(self, record: JsonObject, d: AduDevice) -> str:
        agent = d.agent
        wf: dict[str, Any] = agent.get("workflow") or {}
        wf = wf if isinstance(wf, dict) else {}
        rolled = d.device_id in record["_rollback"]
        expected = record["_workflow"] + ("-rollback" if rolled else "")
        target = (
            record["rollbackPolicy"]["update"]["updateId"]
            if rolled
            else record["update"]["updateId"]
        )
        if wf.get("id") == expected:
            retry = record["_retries"].get(d.device_id)
            if retry is not None and wf.get("retryTimestamp") != retry:
                return IN_PROGRESS  # the retry is not picked up yet
            if wf.get("action") == 255:
                return CANCELED
            state = agent.get("state")
            if state == 255:
                return FAILED
            if state == 0 and d.installed_update == target:
                return SUCCEEDED
            return IN_PROGRESS
        if record.get("isCanceled"):
            return CANCELED
        return SUCCEEDED if d.installed_update == target else IN_PROGRESS

    def subgroup_status(
        self, record: JsonObject, class_id: str, members: list[AduDevice]
    ) -> JsonObject:
        states = [self.device_state(record, d) for d in members]
        if record.get("isCanceled"):
            state = "Canceled"
        elif record.get("_inactive"):
            state = "Inactive"
        elif FAILED in states:
            state = "Failed"
        else:
            state = "Active"
        return {
            "groupId": record["groupId"],
            "deviceClassId": class_id,
            "deploymentState": state,
            "totalDevices": len(members),
            "devicesInProgressCount": states.count(IN_PROGRESS),
            "devicesCompletedFailedCount": states.count(FAILED),
            "devicesCompletedSucceededCount": states.count(SUCCEEDED),
            "devicesCanceledCount": states.count(CANCELED),
        }

    def deployment_status(self, record: JsonObject) -> JsonObject:
        subs = [
            self.subgroup_status(record, c, m)
            for c, m in self.subgroups(record, self.devices()).items()
        ]
        if record.get("isCanceled"):
            state = "Canceled"
        elif record.get("_inactive"):
            state = "Inactive"
        elif any(s["deploymentState"] == "Failed" for s in subs):
            state = "ActiveWithSubgroupFailures"
        else:
            state = "Active"
        return {"groupId": record["groupId"], "deploymentState": state, "subgroupStatus": subs}

    def last_deployment(self, d: AduDevice) -> JsonObject | None:
        wf: dict[str, Any] = d.agent.get("workflow") or {}
        wf = wf if isinstance(wf, dict) else {}
        for record in self.deployments.values():
            if wf.get("id", "").split("-rollback")[0] == record["_workflow"]:
                return record
        return None

    def device_json(self, d: AduDevice) -> JsonObject:
        best = self.best_update(d.class_id)
        installed = d.installed_update
        on_latest = best is None or installed == best["updateId"]
        record = self.last_deployment(d)
        out: JsonObject = {
            "deviceId": d.device_id,
            "deviceClassId": d.class_id,
            "groupId": d.group_id,
            "onLatestUpdate": on_latest,
        }
        if installed is not None:
            out["installedUpdate"] = {"updateId": installed}
        if record is not None:
            out["lastDeploymentId"] = record["deploymentId"]
            out["deploymentStatus"] = self.device_state(record, d)
            out["lastAttemptedUpdate"] = {"updateId": record["update"]["updateId"]}
        result = d.agent.get("lastInstallResult")
        if isinstance(result, dict):
            out["lastInstallResult"] = _install_result(result)
        return out

    def compliance(self, devices: list[AduDevice]) -> JsonObject:
        on_latest = in_progress = 0
        for d in devices:
            info = self.device_json(d)
            if info["onLatestUpdate"]:
                on_latest += 1
            elif info.get("deploymentStatus") == IN_PROGRESS:
                in_progress += 1
        return {
            "totalDeviceCount": len(devices),
            "onLatestUpdateDeviceCount": on_latest,
            "newUpdatesAvailableDeviceCount": len(devices) - on_latest - in_progress,
            "updatesInProgressDeviceCount": in_progress,
        }


def _erc(text: Any) -> int:
    first = str(text or "0").split(",")[0]
    with contextlib.suppress(ValueError):
        return int(first, 16)
    return 0


def _install_result(result: JsonObject) -> JsonObject:
    steps: dict[str, Any] = result.get("stepResults") or {}
    steps = steps if isinstance(steps, dict) else {}
    return {
        "resultCode": result.get("resultCode", 0),
        "extendedResultCode": _erc(result.get("extendedResultCodes")),
        "resultDetails": result.get("resultDetails") or "",
        "stepResults": [
            {
                "resultCode": s.get("resultCode", 0),
                "extendedResultCode": _erc(s.get("extendedResultCodes")),
                "resultDetails": s.get("resultDetails") or "",
                "description": name,
            }
            for name, s in steps.items()
            if isinstance(s, dict)
        ],
    }

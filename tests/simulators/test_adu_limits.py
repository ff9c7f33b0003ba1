"""The local ADU service's documented limits and its rollback policy, in-process and fast.

The service is driven directly over a fake hub (twins in a dict, a settable clock);
the REST API and the SDK over it are covered in test_adu_service.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.adu.contract import CONTRACT_MODEL_ID, device_properties
from simulators.hub.adu import importer, limits
from simulators.hub.adu.catalog import update_key
from simulators.hub.adu.errors import AduRequestError
from simulators.hub.adu.service import AduService, Settings
from simulators.hub.adu.signer import TestSigner


class FakeHub:
    def __init__(self) -> None:
        self.tags: dict[str, dict[str, Any]] = {}
        self.reported: dict[str, dict[str, Any]] = {}
        self.desired: dict[str, dict[str, Any]] = {}

    def add(self, device_id: str, *, model: str = "vmcu-f4", group: str | None = "lab") -> None:
        self.tags[device_id] = {"ADUGroup": group} if group else {}
        agent = {
            "deviceProperties": device_properties("contoso", model),
            "compatPropertyNames": "manufacturer,model",
            "state": 0,
        }
        self.reported[device_id] = {"deviceUpdate": {"__t": "c", "agent": agent}}

    def report(self, device_id: str, **agent: Any) -> None:
        self.reported[device_id]["deviceUpdate"]["agent"].update(agent)

    def adu_twins(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        return [(d, self.tags[d], self.reported[d]) for d in self.tags]

    def model_ids(self) -> dict[str, str]:
        return dict.fromkeys(self.tags, CONTRACT_MODEL_ID)

    def write_desired(self, device_id: str, patch: dict[str, Any]) -> None:
        self.desired[device_id] = json.loads(json.dumps(patch))

    def service(self, device_id: str) -> dict[str, Any]:
        return self.desired.get(device_id, {}).get("deviceUpdate", {}).get("service", {})


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(tmp_path: Path, hub: FakeHub, signer: TestSigner, clock: Clock) -> AduService:
    return AduService(
        hub, Settings("emulator", "https://adu.test/adu-files", tmp_path), signer, clock=clock
    )


def add_update(
    svc: AduService, version: str, model: str = "vmcu-f4", name: str = "sensor-app"
) -> dict[str, str]:
    uid = {"provider": "contoso", "name": name, "version": version}
    manifest = {
        "updateId": uid,
        "compatibility": [{"manufacturer": "contoso", "model": model}],
        "instructions": {
            "steps": [
                {
                    "handler": "mcu-gateway/package:1",
                    "files": ["a.bin"],
                    "handlerProperties": {"installedCriteria": version},
                }
            ]
        },
        "files": [
            {
                "filename": "a.bin",
                "sizeInBytes": 1,
                "hashes": {"sha256": base64.b64encode(hashlib.sha256(b"a").digest()).decode()},
            }
        ],
        "createdDateTime": "2026-12-06T00:00:00Z",
        "manifestVersion": "5.0",
    }
    importer.validate(manifest)
    files = importer.imported_files(manifest)
    svc.catalog._check_update_limits(uid)
    svc.updates[update_key(uid)] = {
        "updateId": uid,
        "compatibility": manifest["compatibility"],
        "instructions": manifest["instructions"],
        "isDeployable": True,
        "_files": [f.__dict__ for f in files],
        "_deviceManifest": importer.device_manifest(manifest, files),
    }
    return uid


def deploy(
    svc: AduService, dep_id: str, uid: dict[str, str], group: str = "lab", **extra: Any
) -> dict[str, Any]:
    body = {
        "deploymentId": dep_id,
        "groupId": group,
        "startDateTime": "2020-01-01T00:00:00Z",
        "update": {"updateId": uid},
        **extra,
    }
    return svc.put_deployment(group, dep_id, body)


def test_update_limit(svc: AduService) -> None:
    for i in range(limits.MAX_UPDATES):
        add_update(svc, f"1.0.{i}", name=f"app{i % 20}")
    with pytest.raises(AduRequestError) as info:
        add_update(svc, "9.9.9")
    assert info.value.code == "UpdateLimitExceeded"


def test_versions_per_name_limit(svc: AduService) -> None:
    for i in range(limits.MAX_VERSIONS_PER_NAME):
        svc.updates[f"contoso/app/1.0.{i}"] = {
            "updateId": {"provider": "contoso", "name": "app", "version": f"1.0.{i}"}
        }
    svc.updates.popitem()  # 99 versions and one slot under the total
    svc.catalog._check_update_limits({"provider": "contoso", "name": "app", "version": "2.0"})
    svc.updates["contoso/app/x"] = {
        "updateId": {"provider": "contoso", "name": "app", "version": "1.1"}
    }
    with pytest.raises(AduRequestError):
        svc.catalog._check_update_limits({"provider": "contoso", "name": "app", "version": "2.0"})


def test_device_class_limit(svc: AduService, hub: FakeHub) -> None:
    for i in range(limits.MAX_DEVICE_CLASSES + 1):
        hub.add(f"d{i:03d}", model=f"m{i:03d}", group=None)
    devices = svc.devices()
    assert len(svc.classes) == limits.MAX_DEVICE_CLASSES
    assert len(devices) == limits.MAX_DEVICE_CLASSES  # the 81st class's device is not managed


def test_group_limit(svc: AduService, hub: FakeHub) -> None:
    for i in range(limits.MAX_GROUPS + 1):
        hub.add(f"d{i:03d}", group=f"g{i:03d}")
    svc.devices()
    assert len(svc.groups) == limits.MAX_GROUPS


def test_deployment_limit_and_throttle(svc: AduService, hub: FakeHub, clock: Clock) -> None:
    hub.add("d1")
    uid = add_update(svc, "1.1.0")
    for i in range(limits.MAX_DEPLOYMENTS):
        if i and i % limits.DEPLOYMENT_WRITES_PER_MINUTE == 0:
            clock.now += 60.0  # the throttle window passes
        deploy(svc, f"dep{i}", uid)
    clock.now += 60.0
    with pytest.raises(AduRequestError) as info:
        deploy(svc, "one-too-many", uid)
    assert info.value.code == "DeploymentLimitExceeded"
    svc.delete_deployment("lab", "dep0")
    deploy(svc, "fits-again", uid)


def test_throttle_window_is_one_minute(svc: AduService, hub: FakeHub, clock: Clock) -> None:
    hub.add("d1")
    uid = add_update(svc, "1.1.0")
    for i in range(limits.DEPLOYMENT_WRITES_PER_MINUTE):
        deploy(svc, f"dep{i}", uid)
    clock.now += 59.0
    with pytest.raises(AduRequestError) as info:
        deploy(svc, "early", uid)
    assert info.value.status == 429
    clock.now += 1.0
    deploy(svc, "on-time", uid)


def test_cloud_initiated_rollback(svc: AduService, hub: FakeHub) -> None:
    for d in ("d1", "d2", "d3", "d4"):
        hub.add(d)
    old = add_update(svc, "1.0.0")
    new = add_update(svc, "1.1.0")
    policy = {
        "update": {"updateId": old},
        "failure": {"devicesFailedCount": 2, "devicesFailedPercentage": 50},
    }
    deploy(svc, "dep", new, rollbackPolicy=policy)
    wf = hub.service("d1")["workflow"]["id"]
    hub.report("d1", state=255, workflow={"action": 3, "id": wf})
    svc.tick()
    assert hub.service("d1")["workflow"]["id"] == wf  # one failure of four: below both thresholds
    hub.report("d2", state=255, workflow={"action": 3, "id": wf})
    svc.tick()
    for d in ("d1", "d2"):  # two failures, 50 %: both thresholds met
        value = hub.service(d)
        assert value["workflow"]["id"] == wf + "-rollback"
        assert json.loads(value["updateManifest"])["updateId"] == old
    assert hub.service("d3")["workflow"]["id"] == wf
    record = svc.deployment("lab", "dep")
    assert record["isCloudInitiatedRollback"] is True
    uid_old = json.dumps(old, separators=(",", ":"))
    hub.report(
        "d1", state=0, workflow={"action": 3, "id": wf + "-rollback"}, installedUpdateId=uid_old
    )
    members = svc.subgroups(record, svc.devices())
    d1 = next(d for m in members.values() for d in m if d.device_id == "d1")
    assert svc.device_state(record, d1) == "Succeeded"


def test_state_survives_a_restart(
    tmp_path: Path, hub: FakeHub, signer: TestSigner, svc: AduService
) -> None:
    hub.add("d1")
    uid = add_update(svc, "1.1.0")
    deploy(svc, "dep", uid)
    again = AduService(hub, Settings("emulator", "https://adu.test/adu-files", tmp_path), signer)
    assert update_key(uid) in again.updates
    assert again.deployment("lab", "dep")["update"]["updateId"] == uid
    assert "lab" in again.groups

"""The emulator's Device Update service, driven by Microsoft's azure-iot-deviceupdate SDK.

Devices here are twins written directly (as an agent would report); the gateway's
own agent against this service is tested end to end in tests/gateway/test_adu_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from firmware import keys
from gateway.adu.contract import CONTRACT_MODEL_ID, device_properties
from gateway.adu.manifest import verify_service
from gateway.adu.rootkeys import RootKeyStore
from simulators.hub import HubEmulator
from simulators.hub.server import HubServer
from tests.adu_support import adu_client, publish, serve_dir
from tests.net import addr, subnet
from tests.simulators.hub_fixtures import start_hub

MODEL = "vmcu-f4"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    emulator = start_hub(tmp_path / "hub", subnet=subnet(22))
    monkeypatch.setenv("NO_PROXY", "*")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "upload"
    root.mkdir()
    with serve_dir(root, addr(21, 1)) as base:
        yield root, base


def import_item(manifest: Path, base: str) -> dict[str, Any]:
    import base64
    import hashlib

    raw = manifest.read_bytes()
    doc = json.loads(raw)
    return {
        "importManifest": {
            "url": base + manifest.name,
            "sizeInBytes": len(raw),
            "hashes": {"sha256": base64.b64encode(hashlib.sha256(raw).digest()).decode()},
        },
        "files": [{"filename": f["filename"], "url": base + f["filename"]} for f in doc["files"]],
    }


def add_device(
    hub: HubEmulator, device_id: str, *, group: str | None = "lab", model: str = MODEL
) -> None:
    hub.create_device(device_id)

    def report(s: HubServer) -> None:
        s.hub.model_ids[device_id] = CONTRACT_MODEL_ID
        agent = {
            "deviceProperties": device_properties("contoso", model),
            "compatPropertyNames": "manufacturer,model",
            "state": 0,
        }
        twin = s.hub.twins[device_id].patch_reported({"deviceUpdate": {"__t": "c", "agent": agent}})
        s.hub.twins[device_id] = twin
        if group is not None:
            s.hub.update_twin(device_id, {"tags": {"ADUGroup": group}}, None)

    hub.call(report)


def agent_reports(hub: HubEmulator, device_id: str, agent: dict[str, Any]) -> None:
    def apply(s: HubServer) -> None:
        twin = s.hub.twins[device_id].patch_reported({"deviceUpdate": {"agent": agent}})
        s.hub.twins[device_id] = twin

    hub.call(apply)


def service_value(hub: HubEmulator, device_id: str) -> dict[str, Any] | None:
    value = hub.twin(device_id).desired.get("deviceUpdate", {}).get("service")
    return value if isinstance(value, dict) else None


def imported(
    hub: HubEmulator,
    client: Any,
    root: Path,
    base: str,
    version: str,
    key: keys.PrivateKey,
    model: str = MODEL,
) -> None:
    manifest, _ = publish(root, key, version, model=model)
    client.device_update.begin_import_update(
        [import_item(manifest, base)], polling_interval=0.2
    ).result(timeout=60)


def test_import_groups_classes_deploy_and_compliance(
    hub: HubEmulator, files: tuple[Path, str]
) -> None:
    root, base = files
    key = keys.generate(keys.Algorithm.ED25519)
    client = adu_client(hub.facts)
    imported(hub, client, root, base, "1.1.0", key)
    update = client.device_update.get_update("contoso", "sensor-app", "1.1.0")
    assert update["installedCriteria"] == "1.1.0"
    assert update["compatibility"] == [{"manufacturer": "contoso", "model": MODEL}]
    file_ids = list(client.device_update.list_files("contoso", "sensor-app", "1.1.0"))
    assert len(file_ids) == 1

    for d in ("mcu-a", "mcu-b"):
        add_device(hub, d)
    add_device(hub, "mcu-other", group=None, model="stm32f4")
    groups = {g["groupId"]: g for g in client.device_management.list_groups()}
    assert groups["lab"]["deviceCount"] == 2
    assert groups["lab"]["groupType"] == "IoTHubTag"
    default = [g for g in groups if g.startswith("Default-")]
    assert len(default) == 1
    classes = list(client.device_management.list_device_classes())
    assert {c["deviceClassProperties"]["compatProperties"]["model"] for c in classes} == {
        MODEL,
        "stm32f4",
    }
    assert all(
        c["deviceClassProperties"]["contractModel"]["id"] == CONTRACT_MODEL_ID for c in classes
    )
    best = list(client.device_management.list_best_updates_for_group("lab"))
    assert best[0]["update"]["updateId"]["version"] == "1.1.0"

    dep = {
        "deploymentId": "dep1",
        "groupId": "lab",
        "startDateTime": "2020-01-01T00:00:00Z",
        "update": {"updateId": {"provider": "contoso", "name": "sensor-app", "version": "1.1.0"}},
    }
    result = client.device_management.create_or_update_deployment("lab", "dep1", dep)
    assert len(result["deviceClassSubgroups"]) == 1
    cls = result["deviceClassSubgroups"][0]

    # Each device's twin now holds a service value the gateway's verifier accepts with the
    # emulator's published test root keys (and only with them).
    store = RootKeyStore.with_test_keys(Path(hub.facts.adu_root_keys))
    for d in ("mcu-a", "mcu-b"):
        value = service_value(hub, d)
        assert value is not None
        verified = verify_service(value, store)
        assert verified.workflow.action == 3
        assert verified.manifest.update_id.version == "1.1.0"
        (fid,) = verified.manifest.files
        assert verified.file_urls[fid].startswith(f"https://{hub.facts.adu_endpoint}/adu-files/")
    assert service_value(hub, "mcu-other") is None

    status = client.device_management.get_deployment_status("lab", "dep1")
    assert status["subgroupStatus"][0]["devicesInProgressCount"] == 2

    wf = service_value(hub, "mcu-a")["workflow"]  # type: ignore[index]
    uid = json.dumps(
        {"provider": "contoso", "name": "sensor-app", "version": "1.1.0"}, separators=(",", ":")
    )
    agent_reports(
        hub,
        "mcu-a",
        {
            "state": 0,
            "workflow": {"action": 3, "id": wf["id"]},
            "installedUpdateId": uid,
            "lastInstallResult": {"resultCode": 700, "extendedResultCodes": "00000000"},
        },
    )
    agent_reports(
        hub,
        "mcu-b",
        {
            "state": 255,
            "workflow": {"action": 3, "id": wf["id"]},
            "lastInstallResult": {
                "resultCode": 0,
                "extendedResultCodes": "30FE0040",
                "resultDetails": "MCU_FLASH: no",
            },
        },
    )
    states = {
        s["deviceId"]: s["deviceState"]
        for s in client.device_management.list_device_states_for_device_class_subgroup_deployment(
            "lab", cls, "dep1"
        )
    }
    assert states == {"mcu-a": "Succeeded", "mcu-b": "Failed"}
    device = client.device_management.get_device("mcu-b")
    assert device["lastInstallResult"]["extendedResultCode"] == 0x30FE0040
    assert device["deploymentStatus"] == "Failed"
    compliance = client.device_management.get_update_compliance_for_group("lab")
    assert compliance == {
        "totalDeviceCount": 2,
        "onLatestUpdateDeviceCount": 1,
        "newUpdatesAvailableDeviceCount": 1,
        "updatesInProgressDeviceCount": 0,
    }

    # Retry: only the failed device gets a retryTimestamp.
    client.device_management.retry_deployment("lab", cls, "dep1")
    assert service_value(hub, "mcu-b")["workflow"]["retryTimestamp"]  # type: ignore[index]
    assert "retryTimestamp" not in service_value(hub, "mcu-a")["workflow"]  # type: ignore[index]
    # Cancel: every device of the subgroup is told action 255 for the same workflow.
    client.device_management.stop_deployment("lab", cls, "dep1")
    value = service_value(hub, "mcu-b")
    assert value is not None
    assert value["workflow"] == {
        "action": 255,
        "id": wf["id"],
        "retryTimestamp": value["workflow"]["retryTimestamp"],
    }
    status = client.device_management.get_deployment_status("lab", "dep1")
    assert status["deploymentState"] == "Canceled"


def test_deployment_waits_for_its_start_time(hub: HubEmulator, files: tuple[Path, str]) -> None:
    root, base = files
    client = adu_client(hub.facts)
    imported(hub, client, root, base, "1.1.0", keys.generate(keys.Algorithm.ED25519))
    add_device(hub, "mcu-a")
    dep = {
        "deploymentId": "later",
        "groupId": "lab",
        "startDateTime": "2099-01-01T00:00:00Z",
        "update": {"updateId": {"provider": "contoso", "name": "sensor-app", "version": "1.1.0"}},
    }
    client.device_management.create_or_update_deployment("lab", "later", dep)
    assert service_value(hub, "mcu-a") is None


def test_import_refuses_what_adu_refuses(hub: HubEmulator, files: tuple[Path, str]) -> None:
    root, base = files
    client = adu_client(hub.facts)
    manifest, _ = publish(root, keys.generate(keys.Algorithm.ED25519), "1.1.0", model=MODEL)
    doc = json.loads(manifest.read_text())
    doc["instructions"]["steps"][0]["handler"] = "no-handler-format"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(HttpResponseError):
        client.device_update.begin_import_update(
            [import_item(manifest, base)], polling_interval=0.2
        ).result(timeout=60)
    ops = list(client.device_update.list_operation_statuses())
    assert ops[-1]["status"] == "Failed"
    assert "handler" in ops[-1]["error"]["message"]
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error, whatever its class
        client.device_update.get_update("contoso", "sensor-app", "1.1.0")


def test_deployment_writes_are_throttled(hub: HubEmulator, files: tuple[Path, str]) -> None:
    root, base = files
    client = adu_client(hub.facts)
    imported(hub, client, root, base, "1.1.0", keys.generate(keys.Algorithm.ED25519))
    add_device(hub, "mcu-a")
    for i in range(6):
        dep = {
            "deploymentId": f"d{i}",
            "groupId": "lab",
            "startDateTime": "2020-01-01T00:00:00Z",
            "update": {
                "updateId": {"provider": "contoso", "name": "sensor-app", "version": "1.1.0"}
            },
        }
        client.device_management.create_or_update_deployment("lab", f"d{i}", dep)
    dep["deploymentId"] = "d6"
    with pytest.raises(HttpResponseError) as info:
        client.device_management.create_or_update_deployment("lab", "d6", dep)
    assert info.value.status_code == 429
    # One active deployment per group: the newest.
    deps = {
        d["deploymentId"]
        for d in client.device_management.list_groups()
        for d in [{"deploymentId": x} for x in d["deployments"]]
    }
    assert deps == {"d5"}


def test_wrong_token_is_refused(hub: HubEmulator) -> None:
    client = adu_client(hub.facts, token="wrong")
    with pytest.raises(HttpResponseError) as info:
        list(client.device_management.list_groups())
    assert info.value.status_code == 401

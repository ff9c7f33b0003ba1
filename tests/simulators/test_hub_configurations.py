"""Automatic device configurations through the official service SDK, as IoT Hub answers them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.hub import HubEmulator
from tests.net import subnet
from tests.simulators.hub_fixtures import start_hub

SUBNET = subnet(12)
FW = {"fwVersion": "2.0.0", "fwPackageURI": "https://x/fw", "fwPackageCheckValue": "ab" * 32}


@pytest.fixture
def fast_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    emulator = start_hub(tmp_path / "hub", SUBNET)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    monkeypatch.setenv("NO_PROXY", "*")
    try:
        yield emulator
    finally:
        emulator.stop()


def managers(hub: HubEmulator) -> tuple[Any, Any]:
    from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

    cs = hub.facts.service_connection_string
    return (
        IoTHubConfigurationManager.from_connection_string(cs),
        IoTHubRegistryManager.from_connection_string(cs),
    )


def configuration(cid: str, target: str, priority: int = 0, fw: dict[str, Any] = FW) -> Any:
    from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

    return Configuration(
        id=cid,
        labels={"purpose": "test"},
        content=ConfigurationContent(device_content={"properties.desired.firmware": fw}),
        target_condition=target,
        priority=priority,
        metrics=ConfigurationMetrics(
            queries={
                "current": "SELECT deviceId FROM devices WHERE "
                f"configurations.[[{cid}]].status = 'Applied' "
                "AND properties.reported.firmware.fwUpdateStatus = 'current'"
            }
        ),
    )


def tag(registry: Any, device_id: str, **tags: Any) -> None:
    from azure.iot.hub.models import Twin

    registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.update_twin(device_id, Twin(tags=tags), "*")


def desired_fw(hub: HubEmulator, device_id: str) -> Any:
    return hub.twin(device_id).desired.get("firmware")


def wait_metrics(configs: Any, cid: str, **expected: int) -> Any:
    """Metrics are recounted each evaluation pass; poll through the SDK, bounded."""
    import time

    deadline = time.monotonic() + 10
    while True:
        got = configs.get_configuration(cid)
        results = {**got.system_metrics.results, **got.metrics.results}
        if all(results.get(k) == v for k, v in expected.items()):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics {results} never reached {expected}")
        time.sleep(0.05)


def test_crud_with_etags(fast_hub: HubEmulator) -> None:
    from msrest.exceptions import HttpOperationError

    configs, _registry = managers(fast_hub)
    made = configs.create_configuration(configuration("fw-a", "tags.[[group]] = 'a'"))
    assert made.etag and made.target_condition == "tags.[[group]] = 'a'"
    assert made.content.device_content["properties.desired.firmware"] == FW
    with pytest.raises(HttpOperationError) as exists:
        configs.create_configuration(configuration("fw-a", "tags.[[group]] = 'a'"))
    assert exists.value.response.status_code == 409

    made.target_condition = "tags.[[group]] = 'b'"
    made.labels = {"state": "halted"}
    updated = configs.update_configuration(made, made.etag)
    assert updated.etag != made.etag and updated.labels == {"state": "halted"}
    with pytest.raises(HttpOperationError) as stale:
        configs.update_configuration(made, made.etag)
    assert stale.value.response.status_code == 412

    changed = configuration("fw-a", "tags.[[group]] = 'b'", fw={**FW, "fwVersion": "3"})
    with pytest.raises(HttpOperationError) as content:
        configs.update_configuration(changed, updated.etag)
    assert content.value.response.status_code == 400

    assert [c.id for c in configs.get_configurations()] == ["fw-a"]
    configs.delete_configuration("fw-a")
    with pytest.raises(HttpOperationError) as gone:
        configs.get_configuration("fw-a")
    assert gone.value.response.status_code == 404


@pytest.mark.parametrize(
    ("cid", "target", "fw", "why"),
    [
        ("Upper", "tags.a = 1", FW, "configuration id"),
        ("fw-b", "tags.a = = 1", FW, "targetCondition"),
        ("fw-b", "tags.group = 'a'", FW, "reserved word"),
        ("fw-b", "tags.a = 1", "six metrics", "at most 5"),
    ],
)
def test_bad_configurations_are_refused(
    fast_hub: HubEmulator, cid: str, target: str, fw: Any, why: str
) -> None:
    from msrest.exceptions import HttpOperationError

    configs, _ = managers(fast_hub)
    config = configuration(cid, target, fw=FW)
    if fw == "six metrics":  # IoT Hub takes five custom metrics at most
        config.metrics.queries = {f"m{i}": "SELECT deviceId FROM devices" for i in range(6)}
    with pytest.raises(HttpOperationError) as refused:
        configs.create_configuration(config)
    assert refused.value.response.status_code == 400
    assert why in refused.value.response.text
    assert configs.get_configurations() == []


def test_query_checks(fast_hub: HubEmulator) -> None:
    from azure.iot.hub.models import ConfigurationQueriesTestInput

    configs, _ = managers(fast_hub)
    answer = configs.test_configuration_queries(
        ConfigurationQueriesTestInput(
            target_condition="tags.x IN ['a'",
            custom_metric_queries={"ok": "SELECT deviceId FROM devices", "bad": "SELECT"},
        )
    )
    assert "']'" in answer.target_condition_error
    assert answer.custom_metric_query_errors["ok"] == ""
    assert answer.custom_metric_query_errors["bad"]


def test_evaluation_priority_metrics_and_late_joiners(fast_hub: HubEmulator) -> None:
    configs, registry = managers(fast_hub)
    tag(registry, "d1", group="a", ring="canary")
    tag(registry, "d2", group="a")
    tag(registry, "d3", group="b")
    configs.create_configuration(configuration("fw-all", "tags.[[group]] = 'a'"))
    high = {**FW, "fwVersion": "9.9.9"}
    configs.create_configuration(
        configuration("fw-canary", "tags.[[group]] = 'a' AND tags.ring = 'canary'", 5, high)
    )
    fast_hub.wait_for(lambda s: s.hub.get_twin("d1").desired.get("firmware") == high, 5)
    assert desired_fw(fast_hub, "d1") == high  # higher priority wins
    assert desired_fw(fast_hub, "d2") == FW
    assert desired_fw(fast_hub, "d3") is None
    wait_metrics(configs, "fw-all", targetedCount=2, appliedCount=1)
    wait_metrics(configs, "fw-canary", targetedCount=1, appliedCount=1)

    # The SDK's Twin model has no `configurations`: read the twin JSON as sent.
    raw = registry.protocol.devices.get_twin("d1", None, True)
    assert raw.response.json()["configurations"] == {
        "fw-canary": {"status": "Applied"},
        "fw-all": {"status": "Targeted"},
    }

    # A device reporting success shows up in the custom metric.
    fast_hub.call(
        lambda s: s.hub.twins.update(
            d2=s.hub.twins["d2"].patch_reported({"firmware": {"fwUpdateStatus": "current"}})
        )
    )
    wait_metrics(configs, "fw-all", current=1)

    # A device that joins the group later gets the content on the next pass.
    tag(registry, "d4", group="a")
    fast_hub.wait_for(lambda s: s.hub.get_twin("d4").desired.get("firmware"), 5)
    assert desired_fw(fast_hub, "d4") == FW
    wait_metrics(configs, "fw-all", targetedCount=3, appliedCount=2)


def test_content_replaces_the_property_and_survives_a_restart(fast_hub: HubEmulator) -> None:
    configs, registry = managers(fast_hub)
    tag(registry, "d1", group="a")
    configs.create_configuration(
        configuration(
            "fw-old", "tags.[[group]] = 'a'", fw={**FW, "installWindow": {"start": "01:00"}}
        )
    )
    configs.create_configuration(
        configuration("fw-new", "tags.[[group]] = 'a'")
    )  # newer wins a tie
    fast_hub.wait_for(lambda s: s.hub.get_twin("d1").desired.get("firmware") == FW, 5)
    version = fast_hub.twin("d1").desired_version
    fast_hub.restart()
    configs, _ = managers(fast_hub)
    assert sorted(c.id for c in configs.get_configurations()) == ["fw-new", "fw-old"]
    wait_metrics(configs, "fw-new", appliedCount=1)
    assert fast_hub.twin("d1").desired_version == version  # nothing re-applied


def test_group_by_query_through_the_service_api(fast_hub: HubEmulator) -> None:
    from azure.iot.hub.models import QuerySpecification

    _, registry = managers(fast_hub)
    for i, group in enumerate("aab"):
        tag(registry, f"d{i}", group=group)
    spec = QuerySpecification(
        query="SELECT tags.[[group]] AS g, COUNT() AS n FROM devices GROUP BY tags.[[group]]"
    )
    raw = registry.protocol.query.get_twins(spec, None, None, None, True)
    assert raw.response.headers["x-ms-item-type"] == "raw"
    assert sorted(raw.response.json(), key=lambda r: r["g"]) == [
        {"g": "a", "n": 2},
        {"g": "b", "n": 1},
    ]


def _twin_desired(hub: HubEmulator, device_id: str) -> Any:
    return hub.twin(device_id).desired


def test_conflicts_resolve_per_path_with_partial_application(fast_hub: HubEmulator) -> None:
    """A higher-priority configuration on another path does not stop this one."""
    from azure.iot.hub.models import Configuration, ConfigurationContent

    configs, registry = managers(fast_hub)
    tag(registry, "d1", group="a")
    configs.create_configuration(configuration("fw-a", "tags.[[group]] = 'a'"))

    def other(cid: str, priority: int, content: dict[str, Any]) -> Any:
        return Configuration(id=cid, target_condition="*", priority=priority,
                             content=ConfigurationContent(device_content=content))  # fmt: skip

    configs.create_configuration(other("team-b", 50, {"properties.desired.telemetry": {"p": 6}}))
    fast_hub.wait_for(lambda s: "telemetry" in s.hub.get_twin("d1").desired, 5)
    wait_metrics(configs, "fw-a", targetedCount=1, appliedCount=1)
    wait_metrics(configs, "team-b", targetedCount=1, appliedCount=1)
    assert desired_fw(fast_hub, "d1") == FW
    assert _twin_desired(fast_hub, "d1")["telemetry"] == {"p": 6}

    # A higher priority on an overlapping path takes it: fw-a applies nothing now.
    configs.create_configuration(other("pin", 60, {"properties.desired.firmware.fwVersion": "7"}))
    wait_metrics(configs, "fw-a", targetedCount=1, appliedCount=0)
    assert desired_fw(fast_hub, "d1") == {"fwVersion": "7"}
    assert _twin_desired(fast_hub, "d1")["telemetry"] == {"p": 6}


def test_settings_go_when_a_twin_stops_matching_and_null_removes(fast_hub: HubEmulator) -> None:
    from azure.iot.hub.models import Configuration, ConfigurationContent, Twin

    configs, registry = managers(fast_hub)
    tag(registry, "d1", group="a")
    registry.update_twin("d1", Twin(properties={"desired": {"legacy": {"x": 1}}}), "*")
    configs.create_configuration(configuration("fw-a", "tags.[[group]] = 'a'"))
    cleanup = Configuration(
        id="cleanup", target_condition="tags.[[group]] = 'a'",
        content=ConfigurationContent(device_content={"properties.desired.legacy": None}),
    )  # fmt: skip
    configs.create_configuration(cleanup)
    fast_hub.wait_for(lambda s: "legacy" not in s.hub.get_twin("d1").desired, 5)
    assert desired_fw(fast_hub, "d1") == FW
    registry.update_twin("d1", Twin(tags={"group": "b"}), "*")
    fast_hub.wait_for(lambda s: "firmware" not in s.hub.get_twin("d1").desired, 5)
    wait_metrics(configs, "fw-a", targetedCount=0, appliedCount=0)


@pytest.mark.parametrize("merge", [False, True])
def test_content_replace_or_merge_mode(tmp_path: Path, merge: bool) -> None:
    """The docs do not say whether content merges; the emulator does either, on request."""
    hub = start_hub(tmp_path / "hub", SUBNET, content_merge=merge)
    try:
        import os

        os.environ["REQUESTS_CA_BUNDLE"] = hub.facts.ca_path
        configs, registry = managers(hub)
        tag(registry, "d1", group="a")
        old = {**FW, "installWindow": {"start": "01:00"}}
        configs.create_configuration(configuration("fw-old", "tags.[[group]] = 'a'", fw=old))
        hub.wait_for(
            lambda s: "installWindow" in (s.hub.get_twin("d1").desired.get("firmware") or {}), 5
        )
        configs.create_configuration(configuration("fw-new", "tags.[[group]] = 'a'"))
        wait_metrics(configs, "fw-new", appliedCount=1)
        fw = desired_fw(hub, "d1")
        assert ("installWindow" in fw) is merge
    finally:
        hub.stop()


def test_free_tier_holds_ten_configurations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msrest.exceptions import HttpOperationError

    from simulators.hub.throttling import Tier

    hub = start_hub(tmp_path / "hub", SUBNET, tier=Tier.F1)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", hub.facts.ca_path)
    try:
        configs, _ = managers(hub)
        for i in range(10):
            configs.create_configuration(configuration(f"c{i}", "tags.a = 1"))
        with pytest.raises(HttpOperationError) as full:
            configs.create_configuration(configuration("c10", "tags.a = 1"))
        assert full.value.response.status_code == 400
        assert "at most 10" in full.value.response.text
    finally:
        hub.stop()


def test_query_pages_hold_at_most_100(fast_hub: HubEmulator) -> None:
    from azure.iot.hub.models import QuerySpecification
    from msrest.exceptions import HttpOperationError

    _, registry = managers(fast_hub)
    spec = QuerySpecification(query="SELECT deviceId FROM devices")
    with pytest.raises(HttpOperationError) as big:
        registry.protocol.query.get_twins(spec, None, "101", None, True)
    assert big.value.response.status_code == 400
    assert registry.protocol.query.get_twins(spec, None, "100", None, True).response.ok

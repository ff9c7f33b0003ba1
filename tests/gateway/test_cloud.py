"""DeviceTwinLink end to end: the real azure-iot-device SDK against the emulator over TLS."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from gateway.cloud import DeviceTwinLink, link_for
from gateway.errors import CloudAuthError
from gateway.identity import DeviceCredentials
from gateway.secret import Secret
from simulators.hub import HubEmulator, HubFacts
from tests.gateway.cloud_fixtures import (
    FAST,
    WAIT,
    ca_pem,
    facts,
    hub,
    next_patch,
    registry_manager,
    static_credentials,
)

__all__ = ["facts", "hub", "registry_manager"]  # fixtures used by name


def _desired(values: dict[str, Any]) -> Twin:
    return Twin(properties=TwinProperties(desired=values))


def _reported_version(hub: HubEmulator, device_id: str) -> int:
    return hub.twin(device_id).reported_version


async def test_connect_get_twin_and_report(hub: HubEmulator) -> None:
    async with link_for(static_credentials(hub, "mcu-a"), FAST) as link:
        assert link.connected
        twin = await link.get_twin()
        assert twin == {"desired": {"$version": 1}, "reported": {"$version": 1}}
        await link.report_now({"firmware": {"currentFwVersion": "1.0.0"}})
        assert hub.twin("mcu-a").reported == {"firmware": {"currentFwVersion": "1.0.0"}}
    assert not link.connected
    await asyncio.to_thread(hub.wait_disconnected, "mcu-a", WAIT)


async def test_reported_patches_are_coalesced_and_exact(hub: HubEmulator) -> None:
    # A rate limit far longer than the test: only the first report and the flush may
    # send, whatever the machine's speed (no sleeps to pace the reports).
    slow = dataclasses.replace(FAST, report_interval_s=3600)
    async with link_for(static_credentials(hub, "mcu-c"), slow) as link:
        before = _reported_version(hub, "mcu-c")
        for i in range(50):
            await link.report({"firmware": {"progress": i * 2, "bytesWritten": i * 1024}})
        await link.report({"firmware": {"fwUpdateStatus": "applying", "error": None}})
        await link.flush(WAIT)
        patches = _reported_version(hub, "mcu-c") - before
        assert 1 <= patches <= 2, f"{patches} PATCHes for 51 reports"
        assert link.sent_patches == patches
        assert hub.twin("mcu-c").reported == {
            "firmware": {"progress": 98, "bytesWritten": 49 * 1024, "fwUpdateStatus": "applying"}
        }


async def test_a_transition_does_not_wait_for_an_unreachable_hub(hub: HubEmulator) -> None:
    async with link_for(static_credentials(hub, "mcu-u"), FAST) as link:
        hub.set_twin_fault(delay=5.0)  # every PATCH answered 5 s late
        async with asyncio.timeout(1.0):  # far below the delay: nothing waits for the hub
            await link.report({"firmware": {"fwUpdateStatus": "applying"}}, urgent=True)
            await link.report({"firmware": {"fwUpdateStatus": "current"}}, urgent=True)
        hub.set_twin_fault()
        await link.flush(WAIT)
        statuses = [p["firmware"]["fwUpdateStatus"] for p in hub.reported_patches("mcu-u")]
        assert statuses == ["applying", "current"]


async def test_a_deleted_object_then_a_new_one_is_not_merged(hub: HubEmulator) -> None:
    # null-then-object cannot be one merge patch; both must reach the hub in order.
    async with link_for(static_credentials(hub, "mcu-e"), FAST) as link:
        await link.report_now({"firmware": {"error": {"code": "x", "phase": "applying"}}})
        await link.report({"firmware": {"error": None}})
        await link.report({"firmware": {"error": {"code": "y"}}})
        await link.flush(WAIT)
        assert hub.twin("mcu-e").reported == {"firmware": {"error": {"code": "y"}}}


async def test_desired_patches_are_delivered_in_order(
    hub: HubEmulator, registry_manager: Any
) -> None:
    async with link_for(static_credentials(hub, "mcu-d"), FAST) as link:
        patches = link.desired_patches()
        await link.get_twin()
        for version in ("1.1.0", "1.2.0"):
            await asyncio.to_thread(
                registry_manager.update_twin,
                "mcu-d",
                _desired({"firmware": {"fwVersion": version}}),
                "*",
            )
        first = await next_patch(link, patches)
        second = await next_patch(link, patches)
        assert first == {"firmware": {"fwVersion": "1.1.0"}, "$version": 2}
        assert second == {"firmware": {"fwVersion": "1.2.0"}, "$version": 3}
        assert link.desired == {"firmware": {"fwVersion": "1.2.0"}, "$version": 3}


async def test_drop_mid_way_reports_after_reconnect_and_catches_up_desired(
    hub: HubEmulator, registry_manager: Any
) -> None:
    hub.create_device("mcu-r")
    await asyncio.to_thread(
        registry_manager.update_twin, "mcu-r", _desired({"keep": 1, "gone": {"a": 1}}), "*"
    )
    credentials = DeviceCredentials(
        hostname=hub.facts.hostname,
        device_id="mcu-r",
        symmetric_key=Secret(hub.device("mcu-r").primary_key),
        ca_pem=ca_pem(hub.facts),
    )
    async with link_for(credentials, FAST) as link:
        patches = link.desired_patches()
        assert (await link.get_twin())["desired"]["$version"] == 2
        await link.report_now({"firmware": {"fwUpdateStatus": "applying", "progress": 10}})

        generation = hub.call(lambda s: s.hub.sessions["mcu-r"].link)
        assert hub.drop_connections() >= 1
        # Desired changes while the device is (about to be) offline, including a deletion.
        await asyncio.to_thread(
            registry_manager.update_twin, "mcu-r", _desired({"gone": None, "new": 2}), "*"
        )
        await link.report({"firmware": {"progress": 60}})
        await link.report({"firmware": {"fwUpdateStatus": "current", "progress": 100}})
        await link.flush(WAIT)
        assert hub.twin("mcu-r").reported == {
            "firmware": {"fwUpdateStatus": "current", "progress": 100}
        }
        patch = await next_patch(link, patches)
        assert patch == {"gone": None, "new": 2, "$version": 3}
        assert link.desired == {"keep": 1, "new": 2, "$version": 3}
        assert link.connected
        # The PATCH went over a new connection, not the dropped one.
        await asyncio.to_thread(
            hub.wait_for, lambda s: s.hub.sessions["mcu-r"].link not in (None, generation), WAIT
        )


async def test_direct_method_round_trip(hub: HubEmulator, registry_manager: Any) -> None:
    calls: list[Any] = []

    async def get_info(payload: Any) -> tuple[int, Any]:
        calls.append(payload)
        return 200, {"uid": "0a1b", "echo": payload}

    async def broken(payload: Any) -> tuple[int, Any]:
        raise RuntimeError("handler bug")

    link = link_for(static_credentials(hub, "mcu-m"), FAST)
    link.on_method("getInfo", get_info)
    link.on_method("broken", broken)
    async with link:
        await asyncio.to_thread(
            hub.wait_for,
            lambda s: "$iothub/methods/POST/#" in s.hub.sessions["mcu-m"].subscriptions,
            WAIT,
        )

        def invoke(name: str) -> Any:
            request = CloudToDeviceMethod(
                method_name=name, payload={"verbose": True}, response_timeout_in_seconds=5
            )
            return registry_manager.invoke_device_method("mcu-m", request)

        result = await asyncio.to_thread(invoke, "getInfo")
        assert (result.status, result.payload) == (200, {"uid": "0a1b", "echo": {"verbose": True}})
        assert calls == [{"verbose": True}]
        assert (await asyncio.to_thread(invoke, "nope")).status == 404
        failed = await asyncio.to_thread(invoke, "broken")
        assert failed.status == 500
        assert "handler bug" in failed.payload["error"]


async def test_bad_key_is_a_cloud_auth_error(hub: HubEmulator, facts: HubFacts) -> None:
    hub.create_device("mcu-x")
    credentials = DeviceCredentials(
        hostname=facts.hostname,
        device_id="mcu-x",
        symmetric_key=Secret("A" * 43 + "="),
        ca_pem=ca_pem(facts),
    )
    link = DeviceTwinLink(credentials, FAST)
    try:
        with pytest.raises(CloudAuthError, match="mcu-x"):
            await link.connect()
    finally:
        await link.close()


async def test_a_patch_the_hub_refuses_is_dropped_not_retried_forever(hub: HubEmulator) -> None:
    # 413: the reported document would pass IoT Hub's 32 KB limit. The SDK wraps the hub's
    # ServiceError in a ClientError; the link must still see a refusal, drop that patch
    # and go on with the next one instead of resending (and merging into) it forever.
    async with link_for(static_credentials(hub, "mcu-big"), FAST) as link:
        await link.report({"blob": "x" * (40 * 1024)})
        await link.flush(WAIT)
        await link.report_now({"firmware": {"currentFwVersion": "1.0.0"}})
        assert hub.twin("mcu-big").reported == {"firmware": {"currentFwVersion": "1.0.0"}}


async def test_a_hub_that_lost_its_sessions_gets_subscriptions_again(
    hub: HubEmulator, registry_manager: Any
) -> None:
    # The SDK subscribes once and trusts the hub's session; after a hub lost it, the
    # link must subscribe again by itself, or desired patches and methods go unheard.
    async def get_info(payload: Any) -> tuple[int, Any]:
        return 200, {"ok": True}

    link = link_for(static_credentials(hub, "mcu-s"), FAST)
    link.on_method("getInfo", get_info)
    async with link:
        patches = link.desired_patches()
        await link.get_twin()
        assert await asyncio.to_thread(hub.drop_sessions) == 1

        def subscribed(s: Any) -> bool:
            session = s.hub.sessions.get("mcu-s")
            return bool(
                session is not None
                and session.link is not None
                and session.subscribed("$iothub/methods/POST/getInfo/?$rid=1")
                and session.subscribed("$iothub/twin/PATCH/properties/desired/?$version=2")
            )

        await asyncio.to_thread(hub.wait_for, subscribed, WAIT)
        await asyncio.to_thread(
            registry_manager.update_twin, "mcu-s", _desired({"firmware": {"fwVersion": "9"}}), "*"
        )
        assert await next_patch(link, patches) == {"firmware": {"fwVersion": "9"}, "$version": 2}
        request = CloudToDeviceMethod(method_name="getInfo", response_timeout_in_seconds=5)
        result = await asyncio.to_thread(registry_manager.invoke_device_method, "mcu-s", request)
        assert (result.status, result.payload) == (200, {"ok": True})
        assert link.resubscribes >= 1

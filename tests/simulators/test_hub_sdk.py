"""Acceptance: the unmodified official SDKs against the emulator over loopback TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import exceptions as device_errors
from azure.iot.device.aio import IoTHubDeviceClient, ProvisioningDeviceClient
from azure.iot.device.iothub.models import MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification, Twin, TwinProperties

from simulators.hub import HubEmulator, HubFacts
from simulators.hub.sas import make_token

WAIT = 10.0  # bound on every wait for the SDK or the emulator
# Retry fast after a drop: the SDK's default is 10 s.
_CLIENT_OPTS: dict[str, Any] = {"connection_retry_interval": 1, "keep_alive": 30}


def _ca(facts: HubFacts) -> str:
    return Path(facts.ca_path).read_text()


@asynccontextmanager
async def device_client(facts: HubFacts, connection_string: str) -> AsyncIterator[Any]:
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=_ca(facts), **_CLIENT_OPTS
    )
    try:
        yield client
    finally:
        await client.shutdown()


class Patches:
    """Collects desired patches from the SDK handler and waits for one that matches.

    The SDK calls a plain-function handler on its own handler thread, so the
    wake-up crosses into the test's loop thread-safely.
    """

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self, patch: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._record, patch)

    def _record(self, patch: dict[str, Any]) -> None:
        self.seen.append(patch)
        self._changed.set()

    async def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                for patch in self.seen:
                    if match(patch):
                        return patch
                self._changed.clear()
                await self._changed.wait()


def _desired(values: dict[str, Any]) -> Twin:
    return Twin(properties=TwinProperties(desired=values))


async def test_connect_get_patch_and_desired_roundtrip(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    async with device_client(hub_facts, hub.create_device("dev-a")) as client:
        patches = Patches()
        client.on_twin_desired_properties_patch_received = patches
        await client.connect()
        twin = await client.get_twin()
        assert twin == {"desired": {"$version": 1}, "reported": {"$version": 1}}

        await client.patch_twin_reported_properties({"firmware": {"currentFwVersion": "1.0.0"}})
        service_twin = await asyncio.to_thread(registry_manager.get_twin, "dev-a")
        assert service_twin.properties.reported["firmware"] == {"currentFwVersion": "1.0.0"}

        await asyncio.to_thread(
            registry_manager.update_twin,
            "dev-a",
            _desired({"firmware": {"fwVersion": "1.1.0"}}),
            service_twin.etag,
        )
        patch = await patches.wait_for(lambda p: "firmware" in p)
        assert patch == {"firmware": {"fwVersion": "1.1.0"}, "$version": 2}

        await client.patch_twin_reported_properties({"firmware": {"pendingFwVersion": "1.1.0"}})
        service_twin = await asyncio.to_thread(registry_manager.get_twin, "dev-a")
        assert service_twin.properties.reported["firmware"] == {
            "currentFwVersion": "1.0.0",
            "pendingFwVersion": "1.1.0",
        }
        assert service_twin.properties.reported["$version"] == 3


async def test_null_deletes_and_stale_etag_is_refused(
    hub: HubEmulator, registry_manager: Any
) -> None:
    from msrest.exceptions import HttpOperationError

    hub.create_device("dev-n")
    first = await asyncio.to_thread(
        registry_manager.update_twin, "dev-n", _desired({"a": 1, "b": {"c": 2}}), "*"
    )
    second = await asyncio.to_thread(
        registry_manager.update_twin, "dev-n", _desired({"b": {"c": None}, "a": None}), first.etag
    )
    assert second.properties.desired == {"b": {}, "$version": 3}
    with pytest.raises(HttpOperationError) as err:
        await asyncio.to_thread(
            registry_manager.update_twin, "dev-n", _desired({"a": 3}), first.etag
        )
    assert err.value.response.status_code == 412


@pytest.mark.parametrize("fault", ["wrong-key", "expired-token", "unknown-device"])
async def test_bad_credentials_are_refused(
    hub: HubEmulator, hub_facts: HubFacts, fault: str
) -> None:
    good = hub.create_device("dev-c")
    key = good.rpartition("SharedAccessKey=")[2]
    resource = f"{hub_facts.hostname}/devices/dev-c"
    if fault == "wrong-key":
        client = IoTHubDeviceClient.create_from_connection_string(
            hub_facts.device_connection_string("dev-c", "A" * 43 + "="),
            server_verification_cert=_ca(hub_facts),
            connection_retry=False,
        )
    elif fault == "unknown-device":
        client = IoTHubDeviceClient.create_from_connection_string(
            hub_facts.device_connection_string("nobody", key),
            server_verification_cert=_ca(hub_facts),
            connection_retry=False,
        )
    else:
        # An expiry of "now, whole seconds" is still accepted by the SDK's own
        # check (expiry < int(now)) but is already past for the hub (expiry <= now).
        token = make_token(resource, key, int(time.time()))
        client = IoTHubDeviceClient.create_from_sastoken(
            token, server_verification_cert=_ca(hub_facts), connection_retry=False
        )
    try:
        with pytest.raises(device_errors.CredentialError):
            async with asyncio.timeout(WAIT):
                await client.connect()
    finally:
        await client.shutdown()
    assert not hub.is_connected("dev-c")


async def test_reconnect_after_drop_keeps_subscriptions(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    async with device_client(hub_facts, hub.create_device("dev-r")) as client:
        patches = Patches()
        client.on_twin_desired_properties_patch_received = patches
        await client.connect()
        await client.get_twin()
        generation = hub.call(lambda s: s.hub.sessions["dev-r"].link)

        assert hub.drop_connections() >= 1
        # The SDK reconnects by itself; wait until a new connection is attached.
        await asyncio.to_thread(
            hub.wait_for, lambda s: s.hub.sessions["dev-r"].link not in (None, generation), WAIT
        )
        await asyncio.to_thread(
            registry_manager.update_twin, "dev-r", _desired({"after": "drop"}), "*"
        )
        patch = await patches.wait_for(lambda p: p.get("after") == "drop")
        assert patch["$version"] == 2


async def test_offline_desired_patch_is_caught_up_on_reconnect(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    async with device_client(hub_facts, hub.create_device("dev-o")) as client:
        patches = Patches()
        client.on_twin_desired_properties_patch_received = patches
        await client.connect()
        await client.disconnect()
        await asyncio.to_thread(hub.wait_disconnected, "dev-o", WAIT)

        await asyncio.to_thread(
            registry_manager.update_twin, "dev-o", _desired({"while": "offline"}), "*"
        )
        await client.connect()
        patch = await patches.wait_for(lambda p: p.get("while") == "offline")
        assert patch["$version"] == 2


async def test_group_enrollment_provisioning(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    reg_id = "mcu-0a1b2c"
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub_facts.dps_host,
        registration_id=reg_id,
        id_scope=hub_facts.dps_id_scope,
        symmetric_key=hub.group_device_key(reg_id),
        server_verification_cert=_ca(hub_facts),
    )
    async with asyncio.timeout(WAIT):
        result = await prov.register()
    assert result.status == "assigned"
    state = result.registration_state
    assert (state.assigned_hub, state.device_id) == (hub_facts.hostname, reg_id)

    connection_string = hub_facts.device_connection_string(
        state.device_id, hub.group_device_key(reg_id)
    )
    async with device_client(hub_facts, connection_string) as client:
        await client.connect()
        device = await asyncio.to_thread(registry_manager.get_device, reg_id)
        assert device.device_id == reg_id
        assert device.connection_state == "Connected"


async def test_wrong_group_key_is_refused_by_dps(hub: HubEmulator, hub_facts: HubFacts) -> None:
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub_facts.dps_host,
        registration_id="mcu-bad",
        id_scope=hub_facts.dps_id_scope,
        symmetric_key=hub.group_device_key("someone-else"),
        server_verification_cert=_ca(hub_facts),
    )
    with pytest.raises(device_errors.CredentialError):
        async with asyncio.timeout(WAIT):
            await prov.register()


async def test_two_devices_are_isolated(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    async with (
        device_client(hub_facts, hub.create_device("dev-1")) as one,
        device_client(hub_facts, hub.create_device("dev-2")) as two,
    ):
        seen_one, seen_two = Patches(), Patches()
        one.on_twin_desired_properties_patch_received = seen_one
        two.on_twin_desired_properties_patch_received = seen_two
        await one.connect()
        await two.connect()
        await one.patch_twin_reported_properties({"who": "one"})
        await two.patch_twin_reported_properties({"who": "two"})
        await asyncio.to_thread(registry_manager.update_twin, "dev-1", _desired({"to": 1}), "*")
        await asyncio.to_thread(registry_manager.update_twin, "dev-2", _desired({"to": 2}), "*")
        await seen_one.wait_for(lambda p: "to" in p)
        await seen_two.wait_for(lambda p: "to" in p)
        assert [p["to"] for p in seen_one.seen if "to" in p] == [1]
        assert [p["to"] for p in seen_two.seen if "to" in p] == [2]
        assert (await one.get_twin())["reported"]["who"] == "one"
        assert (await two.get_twin())["reported"]["who"] == "two"


async def test_direct_method_roundtrip(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    async with device_client(hub_facts, hub.create_device("dev-m")) as client:

        async def on_method(request: Any) -> None:
            body = {"echo": request.payload, "name": request.name}
            await client.send_method_response(
                MethodResponse.create_from_method_request(request, 200, body)
            )

        client.on_method_request_received = on_method
        await client.connect()
        await asyncio.to_thread(
            hub.wait_for,
            lambda s: "$iothub/methods/POST/#" in s.hub.sessions["dev-m"].subscriptions,
            WAIT,
        )
        request = CloudToDeviceMethod(
            method_name="reboot", payload={"delay": 3}, response_timeout_in_seconds=5
        )
        result = await asyncio.to_thread(registry_manager.invoke_device_method, "dev-m", request)
        assert result.status == 200
        assert result.payload == {"echo": {"delay": 3}, "name": "reboot"}


async def test_restart_keeps_twins_and_versions(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    connection_string = hub.create_device("dev-p")
    await asyncio.to_thread(registry_manager.update_twin, "dev-p", _desired({"fw": "2.0.0"}), "*")
    async with device_client(hub_facts, connection_string) as client:
        await client.connect()
        await client.patch_twin_reported_properties({"fw": "1.0.0"})
        before = await client.get_twin()

    facts = hub.restart()
    assert facts == hub_facts  # same CA, address, keys and REST port
    async with device_client(facts, connection_string) as client:
        await client.connect()
        assert await client.get_twin() == before
    after = await asyncio.to_thread(registry_manager.get_twin, "dev-p")
    assert after.properties.desired == {"fw": "2.0.0", "$version": 2}
    assert after.properties.reported == {"fw": "1.0.0", "$version": 2}


async def test_query_by_reported_status_with_paging(
    hub: HubEmulator, registry_manager: Any
) -> None:
    statuses = {f"q{i:02d}": ("error" if i % 3 == 0 else "current") for i in range(9)}
    for device_id, status in statuses.items():
        hub.create_device(device_id)
        hub.call(
            lambda s, d=device_id, st=status: s.hub._save_twin(
                s.hub.get_twin(d).patch_reported({"firmware": {"fwUpdateStatus": st}})
            )
        )
    query = QuerySpecification(
        query="SELECT * FROM devices WHERE properties.reported.firmware.fwUpdateStatus = 'error'"
    )
    found: list[str] = []
    token = None
    for _ in range(10):
        page = await asyncio.to_thread(registry_manager.query_iot_hub, query, token, 2)
        found += [t.device_id for t in page.items]
        token = page.continuation_token
        if not token:
            break
    assert sorted(found) == sorted(d for d, s in statuses.items() if s == "error")

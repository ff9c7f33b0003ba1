"""MQTT sessions (clean_session=0) outlive a hub restart; the drop-sessions fault forgets them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from azure.iot.device.aio import IoTHubDeviceClient
from azure.iot.hub.models import Twin, TwinProperties

from simulators.hub import HubEmulator, HubFacts

WAIT = 15.0
PATCH_FILTER = "$iothub/twin/PATCH/properties/desired/#"


def _client(facts: HubFacts, connection_string: str) -> Any:
    # Reconnect quickly after the hub comes back (the SDK's default is 10 s).
    return IoTHubDeviceClient.create_from_connection_string(
        connection_string,
        server_verification_cert=Path(facts.ca_path).read_text(),
        connection_retry_interval=1,
    )


def _filters(hub: HubEmulator, device_id: str) -> set[str]:
    return hub.call(lambda s: set(s.hub.sessions[device_id].subscriptions))


async def test_subscriptions_survive_a_hub_restart(
    hub: HubEmulator, hub_facts: HubFacts, registry_manager: Any
) -> None:
    client = _client(hub_facts, hub.create_device("dev-s"))
    patches: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def on_patch(patch: Any) -> None:
        loop.call_soon_threadsafe(patches.put_nowait, patch)

    try:
        await client.connect()
        await asyncio.to_thread(setattr, client, "on_twin_desired_properties_patch_received",
                                on_patch)  # fmt: skip
        assert PATCH_FILTER in _filters(hub, "dev-s")
        await asyncio.to_thread(hub.restart)
        await asyncio.to_thread(hub.wait_connected, "dev-s", WAIT)
        # The SDK did not subscribe again: the restarted hub remembered the session.
        assert PATCH_FILTER in _filters(hub, "dev-s")
        desired = Twin(properties=TwinProperties(desired={"fw": "2.0.0"}))
        await asyncio.to_thread(registry_manager.update_twin, "dev-s", desired, "*")
        async with asyncio.timeout(WAIT):
            while "fw" not in (patch := await patches.get()):
                pass  # the SDK's own version-only catch-up after its reconnect
        assert patch["fw"] == "2.0.0"
    finally:
        await client.shutdown()


async def test_drop_sessions_forgets_subscriptions_even_across_a_restart(
    hub: HubEmulator, hub_facts: HubFacts
) -> None:
    client = _client(hub_facts, hub.create_device("dev-d"))
    try:
        await client.connect()
        await client.get_twin()  # subscribes to twin responses
        assert _filters(hub, "dev-d")
        assert await asyncio.to_thread(hub.drop_sessions) == 1
        await asyncio.to_thread(hub.wait_connected, "dev-d", WAIT)  # the SDK comes back...
        assert _filters(hub, "dev-d") == set()  # ...to an empty session
        await asyncio.to_thread(hub.restart)
        await asyncio.to_thread(hub.wait_connected, "dev-d", WAIT)
        assert _filters(hub, "dev-d") == set()
    finally:
        await client.shutdown()

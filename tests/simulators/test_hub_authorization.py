"""Authorization as IoT Hub does it: every device-side topic acts for the connection's identity.

Device B connects with its own valid credentials and tries, topic by topic, to
act for device A. Each attempt is refused, and A's twin, telemetry and
methods are untouched. A raw MQTT client (the emulator's own codec over TLS)
plays B, since the SDK would never send these packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod

from simulators.hub import HubEmulator, HubFacts
from simulators.hub.mqtt import (
    SUBACK_FAILURE,
    ConnAck,
    ConnackCode,
    Connect,
    MqttDecoder,
    Packet,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    encode,
)
from simulators.hub.sas import make_token

_WAIT = 10.0


class RawDevice:
    """One MQTT connection as a device; packets are read into a queue."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = MqttDecoder()
        self._backlog: list[Packet] = []
        self._pid = 0

    def send(self, packet: Packet) -> None:
        self._writer.write(encode(packet))

    async def next(self) -> Packet | None:
        """The next packet, or None once the hub closed the connection."""
        async with asyncio.timeout(_WAIT):
            while not self._backlog:
                data = await self._reader.read(65536)
                if not data:
                    return None
                self._backlog = self._decoder.feed(data)
        return self._backlog.pop(0)

    async def subscribe(self, topic_filter: str) -> int:
        self._pid += 1
        self.send(Subscribe(self._pid, ((topic_filter, 1),)))
        while True:
            packet = await self.next()
            if isinstance(packet, SubAck):
                return packet.return_codes[0]
            assert packet is not None, "connection closed before SUBACK"

    async def ping(self) -> None:
        self.send(PingReq())
        while not isinstance(await self.next(), PingResp):
            pass

    async def closed_by_hub(self) -> bool:
        while (packet := await self.next()) is not None:
            del packet
        return True


@asynccontextmanager
async def connect(facts: HubFacts, hub: HubEmulator, device_id: str) -> AsyncIterator[RawDevice]:
    key = hub.device(device_id).primary_key
    resource = f"{facts.hostname}/devices/{device_id}"
    token = make_token(resource, key, int(time.time()) + 600)
    ctx = ssl.create_default_context(cafile=facts.ca_path)
    reader, writer = await asyncio.open_connection(facts.hostname, facts.mqtt_port, ssl=ctx)
    device = RawDevice(reader, writer)
    username = f"{facts.hostname}/{device_id}/?api-version=2021-04-12"
    device.send(Connect(device_id, username, token.encode(), clean_session=True))
    ack = await device.next()
    assert isinstance(ack, ConnAck) and ack.return_code is ConnackCode.ACCEPTED
    try:
        yield device
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


@pytest.fixture
def pair(hub: HubEmulator) -> HubEmulator:
    hub.create_device("dev-a")
    hub.create_device("dev-b")
    return hub


async def test_b_cannot_answer_a_method(pair: HubEmulator, hub_facts: HubFacts) -> None:
    registry = IoTHubRegistryManager.from_connection_string(hub_facts.service_connection_string)
    async with connect(hub_facts, pair, "dev-a") as a, connect(hub_facts, pair, "dev-b") as b:
        assert await a.subscribe("$iothub/methods/POST/#") == 1
        method = CloudToDeviceMethod(method_name="who", payload={}, response_timeout_in_seconds=5)
        call = asyncio.get_running_loop().run_in_executor(
            None,
            lambda: registry.invoke_device_method("dev-a", method),
        )
        request = await a.next()
        assert isinstance(request, Publish)
        assert request.topic.startswith("$iothub/methods/POST/who/")
        rid = request.topic.rsplit("$rid=", 1)[1]
        # B answers A's request id first: IoT Hub does not route it to A's caller.
        b.send(Publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"who": "B"}).encode()))
        await b.ping()  # the hub handled B's answer before this PINGRESP
        a.send(Publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"who": "A"}).encode()))
        result: Any = await asyncio.wait_for(call, _WAIT)
    assert result.status == 200
    assert result.payload == {"who": "A"}


async def test_b_cannot_subscribe_to_a_cloud_to_device_messages(
    pair: HubEmulator, hub_facts: HubFacts
) -> None:
    async with connect(hub_facts, pair, "dev-b") as b:
        assert await b.subscribe("devices/dev-a/messages/devicebound/#") == SUBACK_FAILURE
        assert await b.subscribe("devices/+/messages/devicebound/#") == SUBACK_FAILURE
        assert await b.subscribe("#") == SUBACK_FAILURE
        assert await b.subscribe("devices/dev-b/messages/devicebound/#") == 1
    filters = pair.call(lambda s: dict(s.hub.sessions["dev-b"].subscriptions))
    assert list(filters) == ["devices/dev-b/messages/devicebound/#"]


async def test_b_cannot_send_telemetry_as_a(pair: HubEmulator, hub_facts: HubFacts) -> None:
    async with connect(hub_facts, pair, "dev-b") as b:
        b.send(Publish("devices/dev-a/messages/events/", b"forged"))
        assert await b.closed_by_hub()
    assert pair.telemetry("dev-a") == []
    assert pair.telemetry("dev-b") == []


async def test_b_twin_patch_changes_only_b(pair: HubEmulator, hub_facts: HubFacts) -> None:
    async with connect(hub_facts, pair, "dev-b") as b:
        assert await b.subscribe("$iothub/twin/res/#") == 1
        # The twin topics carry no device id: whatever B writes, it is B's twin.
        b.send(Publish("$iothub/twin/PATCH/properties/reported/?$rid=1&deviceId=dev-a",
                       json.dumps({"owner": "B"}).encode()))  # fmt: skip
        answer = await b.next()
        assert isinstance(answer, Publish) and answer.topic.startswith("$iothub/twin/res/204/")
    assert pair.twin("dev-b").reported.get("owner") == "B"
    assert "owner" not in pair.twin("dev-a").reported


async def test_b_twin_get_reads_only_b(pair: HubEmulator, hub_facts: HubFacts) -> None:
    secret = {"properties": {"desired": {"secret": 1}}}
    pair.call(lambda s: s.hub.update_twin("dev-a", secret, None))
    async with connect(hub_facts, pair, "dev-b") as b:
        assert await b.subscribe("$iothub/twin/res/#") == 1
        b.send(Publish("$iothub/twin/GET/?$rid=7&deviceId=dev-a", b""))
        answer = await b.next()
        assert isinstance(answer, Publish) and answer.topic.startswith("$iothub/twin/res/200/")
    assert "secret" not in json.loads(answer.payload)["desired"]


async def test_b_cannot_publish_to_another_kind_of_topic(
    pair: HubEmulator, hub_facts: HubFacts
) -> None:
    async with connect(hub_facts, pair, "dev-b") as b:
        b.send(Publish("$iothub/twin/PATCH/properties/desired/?$version=9", b"{}"))
        assert await b.closed_by_hub()
    assert pair.twin("dev-a").desired_version == pair.twin("dev-b").desired_version

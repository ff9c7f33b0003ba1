"""Hostile input at the hub emulator, driven by a plain MQTT client (paho) and HTTP.

Each case gets a clear answer from the documented limit and leaves the hub serving
(issue 17 item 9): a reported patch nested 5,000 levels deep, a device holding too
many subscriptions, a REST body or a query nested too deep.
"""

from __future__ import annotations

import json
import queue
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

from simulators.hub import HubEmulator, HubFacts
from simulators.hub.broker import MAX_SUBSCRIPTIONS
from simulators.hub.sas import make_token

WAIT = 10.0


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


class _Device:
    """A raw MQTT 3.1.1 device connection, as IoT Hub's MQTT docs describe one."""

    def __init__(self, facts: HubFacts, device_id: str, key: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, ...]] = queue.Queue()
        self.client = mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(
            f"{facts.hostname}/{device_id}/?api-version=2021-04-12",
            make_token(f"{facts.hostname}/devices/{device_id}", key, int(time.time()) + 3600),
        )
        self.client.tls_set(ca_certs=facts.ca_path, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda _c, _u, _mid, granted: self.subacks.put(tuple(granted))
        connected: queue.Queue[int] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc: connected.put(rc)
        self.client.connect(facts.hostname, facts.mqtt_port)
        self.client.loop_start()
        assert connected.get(timeout=WAIT) == 0

    def subscribe(self, topic_filter: str) -> int:
        self.client.subscribe(topic_filter, qos=1)
        (code,) = self.subacks.get(timeout=WAIT)
        return code

    def patch_reported(self, body: str, rid: int) -> str:
        """Publish a reported patch; returns the status segment of the twin response."""
        self.client.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={rid}", body)
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            topic, _ = self.messages.get(timeout=left)
            parts = topic.split("/")
            if topic.startswith("$iothub/twin/res/") and f"$rid={rid}" in parts[-1]:
                return parts[3]
        raise AssertionError(f"no twin response to $rid={rid}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(hub: HubEmulator, hub_facts: HubFacts) -> Iterator[_Device]:
    connection_string = hub.create_device("dev-h")
    key = dict(p.split("=", 1) for p in connection_string.split(";"))["SharedAccessKey"]
    dev = _Device(hub_facts, "dev-h", key)
    try:
        yield dev
    finally:
        dev.close()


def test_a_reported_patch_5000_levels_deep_is_answered_400(
    hub: HubEmulator, device: _Device
) -> None:
    assert device.subscribe("$iothub/twin/res/#") == 1
    assert device.patch_reported(_deep(5000), rid=1) == "400"
    # Over the documented depth by one level is refused the same way.
    assert device.patch_reported(_deep(12), rid=2) == "400"
    # The device and the hub carry on.
    assert device.patch_reported(json.dumps({"fw": {"v": "1.0.0"}}), rid=3) == "204"
    assert hub.call(lambda s: s.hub.get_twin("dev-h").reported) == {"fw": {"v": "1.0.0"}}


def test_a_device_holds_at_most_the_documented_subscriptions(
    hub: HubEmulator, device: _Device
) -> None:
    own = "devices/dev-h/messages/devicebound/"
    for i in range(MAX_SUBSCRIPTIONS):
        assert device.subscribe(f"{own}f{i}") == 1
    assert device.subscribe(f"{own}one-too-many") == 0x80
    assert device.subscribe(f"{own}f0") == 1  # one it holds already: granted again
    device.client.unsubscribe(f"{own}f1")
    deadline = time.monotonic() + WAIT
    while f"{own}f1" in hub.call(lambda s: set(s.hub.sessions["dev-h"].subscriptions)):
        assert time.monotonic() < deadline, "UNSUBSCRIBE not applied"
        time.sleep(0.01)
    assert device.subscribe(f"{own}after-unsubscribe") == 1
    assert len(hub.call(lambda s: s.hub.sessions["dev-h"].subscriptions)) == MAX_SUBSCRIPTIONS


def _service(facts: HubFacts) -> tuple[str, dict[str, str]]:
    parts = dict(p.split("=", 1) for p in facts.service_connection_string.split(";"))
    host = parts["HostName"]
    token = make_token(
        host, parts["SharedAccessKey"], int(time.time()) + 3600, parts["SharedAccessKeyName"]
    )
    return f"https://{host}", {"Authorization": token, "Content-Type": "application/json"}


def _post(facts: HubFacts, path: str, body: str, method: str = "POST") -> Any:
    base, headers = _service(facts)
    url = f"{base}{path}?api-version=2021-04-12"
    return requests.request(
        method, url, data=body.encode(), headers=headers, verify=facts.ca_path, timeout=WAIT
    )


def test_a_query_with_500_nested_parentheses_is_a_400(
    hub: HubEmulator, hub_facts: HubFacts
) -> None:
    where = "(" * 500 + "deviceId = 'x'" + ")" * 500
    body = json.dumps({"query": f"SELECT * FROM devices WHERE {where}"})
    answer = _post(hub_facts, "/devices/query", body)
    assert answer.status_code == 400, answer.text
    assert "nested deeper" in answer.text
    ok = _post(hub_facts, "/devices/query", json.dumps({"query": "SELECT * FROM devices"}))
    assert ok.status_code == 200


def test_a_service_twin_patch_5000_levels_deep_is_a_400(
    hub: HubEmulator, hub_facts: HubFacts
) -> None:
    hub.create_device("dev-s")
    body = '{"properties":{"desired":' + _deep(5000) + "}}"
    answer = _post(hub_facts, f"/twins/{urllib.parse.quote('dev-s')}", body, method="PATCH")
    assert answer.status_code == 400, answer.text
    assert "nesting deeper than 10" in answer.text

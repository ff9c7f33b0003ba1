"""Fixtures for the gateway's cloud-side tests: an emulator on 127.0.5.x and helpers.

Import what a module needs (``from tests.gateway.cloud_fixtures import hub``);
this is not a conftest so other gateway test modules stay unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cloud import DeviceTwinLink, LinkOptions
from gateway.identity import DeviceCredentials
from gateway.secret import Secret
from simulators.hub import HubEmulator, HubFacts
from tests.net import subnet
from tests.simulators.hub_fixtures import running_hub

SUBNET = subnet(5)  # this suite's loopback addresses; other suites use other subnets
WAIT = 15.0  # bound on every wait for the SDK or the emulator
# Reconnect fast after a drop (SDK default 10 s); short timeouts keep failures quick.
FAST = LinkOptions(connect_timeout_s=10, call_timeout_s=10, retry_interval_s=1, keep_alive_s=30)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    yield from running_hub(tmp_path, monkeypatch, SUBNET)


@pytest.fixture
def facts(hub: HubEmulator) -> HubFacts:
    return hub.facts


@pytest.fixture
def registry_manager(facts: HubFacts) -> Any:
    from azure.iot.hub import IoTHubRegistryManager

    return IoTHubRegistryManager.from_connection_string(facts.service_connection_string)


def ca_pem(facts: HubFacts) -> str:
    return Path(facts.ca_path).read_text()


def static_credentials(hub: HubEmulator, device_id: str) -> DeviceCredentials:
    facts = hub.facts
    return DeviceCredentials(
        hostname=facts.hostname,
        device_id=device_id,
        connection_string=Secret(hub.create_device(device_id)),
        ca_pem=ca_pem(facts),
    )


async def next_patch(link: DeviceTwinLink, patches: AsyncIterator[dict[str, Any]]) -> Any:
    async with asyncio.timeout(WAIT):
        return await anext(patches)

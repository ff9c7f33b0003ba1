"""A hub emulator that re-evaluates configurations quickly, and twins seeded in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.hub import HubEmulator
from simulators.hub.registry import Device
from tests.net import subnet
from tests.simulators.hub_fixtures import start_hub

SUBNET = subnet(12)


@pytest.fixture
def fast_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    emulator = start_hub(tmp_path / "hub", SUBNET)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv("MCU_GATEWAY_SERVICE_CS", raising=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def cs_file(fast_hub: HubEmulator, tmp_path: Path) -> Path:
    path = tmp_path / "service.cs"
    path.touch(mode=0o600)
    path.write_text(fast_hub.facts.service_connection_string + "\n")
    return path


def seed(hub: HubEmulator, twins: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Create devices with tags and reported properties, straight into the hub's state."""

    def apply(server: Any) -> None:
        for device_id, (tags, reported) in twins.items():
            server.hub.put_device(Device(device_id))
            twin = server.hub.twins[device_id].patch_tags(tags).patch_reported(reported)
            server.hub.twins[device_id] = twin

    hub.call(apply, timeout=120)


def mcu(model: str, version: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "mcu": {"model": model, "gatewayDeviceId": "gw-1", "serialPort": "/dev/ttyUSB0"},
        "firmware": {"fwUpdateStatus": status, "currentFwVersion": version, **extra},
    }

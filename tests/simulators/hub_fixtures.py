"""Reusable pytest fixtures for tests that need the IoT Hub / DPS emulator.

Import them into a conftest with
``from tests.simulators.hub_fixtures import hub, hub_facts, registry_manager  # noqa: F401``.
Each test gets its own 127.x.y.z address, because port 8883 is fixed in the
device SDK; set ``HUB_SUBNET`` in your module (or use :func:`start_hub`) to
keep your suite's addresses apart from another suite's.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.hub import HubEmulator, HubFacts
from simulators.hub.addresses import first_free
from tests.net import subnet

# Addresses these fixtures hand out: 127.0.4.1 .. 127.0.4.254, one per test.
DEFAULT_SUBNET = subnet(4)
#: The time scale tests run the hub at: every cadence 3000 times faster, together.
FAST = 3000.0
_counters: dict[str, Iterator[int]] = {}
_lock = threading.Lock()


def next_address(subnet: str = DEFAULT_SUBNET) -> str:
    with _lock:
        counter = _counters.setdefault(subnet, itertools.cycle(range(1, 255)))
        return f"{subnet}{next(counter)}"


def start_hub(
    state_dir: Path,
    subnet: str = DEFAULT_SUBNET,
    attempts: int = 20,
    time_scale: float = FAST,
    **options: Any,
) -> HubEmulator:
    """Start an emulator on the next free address of ``subnet``.

    Tests run the hub's real ratios, sped up by ``time_scale`` (default
    :data:`FAST`: a five-minute configuration evaluation takes 0.1 s).
    """

    def start(address: str) -> HubEmulator:
        emulator = HubEmulator(state_dir, address, time_scale=time_scale, **options)
        emulator.start()
        return emulator

    return first_free((next_address(subnet) for _ in range(attempts)), start)


def running_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subnet: str = DEFAULT_SUBNET
) -> Iterator[HubEmulator]:
    """Body of a hub fixture: start on ``subnet``, trust its CA, stop afterwards."""
    emulator = start_hub(tmp_path / "hub", subnet=subnet)
    # The service SDK (requests) must trust the emulator's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    monkeypatch.setenv("NO_PROXY", "*")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    """A running emulator with a fresh state directory; stopped after the test."""
    yield from running_hub(tmp_path, monkeypatch)


@pytest.fixture
def hub_facts(hub: HubEmulator) -> HubFacts:
    return hub.facts


@pytest.fixture
def registry_manager(hub_facts: HubFacts) -> Any:
    """The official service SDK's ``IoTHubRegistryManager``, bound to the emulator."""
    from azure.iot.hub import IoTHubRegistryManager

    return IoTHubRegistryManager.from_connection_string(hub_facts.service_connection_string)

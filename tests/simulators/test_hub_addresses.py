"""One way to put a hub on a free loopback address: taken addresses are skipped, nothing else."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from simulators.hub import HubEmulator, StartupError
from simulators.hub.addresses import first_free
from tests.net import addr


def _start(state: Path):  # type: ignore[no-untyped-def]
    def start(address: str) -> HubEmulator:
        hub = HubEmulator(state, address)
        hub.start()
        return hub

    return start


def test_a_taken_address_is_skipped(tmp_path: Path) -> None:
    busy, free = addr(30, 1), addr(30, 2)
    with socket.create_server((busy, 8883)):  # someone else's MQTT port on this address
        hub = first_free([busy, free], _start(tmp_path / "hub"))
        try:
            assert hub.facts.hostname == free
        finally:
            hub.stop()


def test_no_free_address_names_the_range(tmp_path: Path) -> None:
    busy = addr(30, 3)
    with socket.create_server((busy, 8883)), pytest.raises(StartupError, match=busy):
        first_free([busy], _start(tmp_path / "hub"))


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    tried: list[str] = []

    def start(address: str) -> None:
        tried.append(address)
        raise StartupError("state directory is locked")

    with pytest.raises(StartupError, match="locked"):
        first_free([addr(30, 4), addr(30, 5)], start)
    assert tried == [addr(30, 4)]

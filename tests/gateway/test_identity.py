"""Identity translation against the emulator: DPS group enrollment, registry, static."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.cloud import link_for
from gateway.config import DpsSettings, RegistrySettings, load_config
from gateway.errors import IdentityError
from gateway.identity import (
    DpsProvider,
    RegistryProvider,
    derive_device_key,
    device_id_for,
    provider_from_config,
)
from gateway.journal import Journal
from gateway.secret import Secret
from simulators.hub import HubEmulator, HubFacts
from tests.gateway.cloud_fixtures import FAST, ca_pem, facts, hub

__all__ = ["facts", "hub"]  # fixtures used by name


def test_device_ids_are_stable_and_valid() -> None:
    uid = bytes.fromhex("0A1B2C3D4E5F6071")
    assert device_id_for(uid, "STM32-L4") == "stm32-l4-0a1b2c3d4e5f6071"
    assert device_id_for(uid, "Sensor Board/v2!") == "sensor-board-v2-0a1b2c3d4e5f6071"
    assert device_id_for(uid, "") == "mcu-0a1b2c3d4e5f6071"
    assert len(device_id_for(uid, "x" * 500)) == 128
    with pytest.raises(ValueError, match="empty"):
        device_id_for(b"", "m")


def test_derived_key_matches_the_dps_rule(hub: HubEmulator, facts: HubFacts) -> None:
    key = derive_device_key(Secret(facts.group_enrollment_key), "m-01")
    assert key.reveal() == hub.group_device_key("m-01")
    assert repr(key) == "Secret('***')"
    with pytest.raises(IdentityError, match="base64"):
        derive_device_key(Secret("not base64!"), "m-01")


async def test_dps_registers_creates_device_and_caches_assignment(
    hub: HubEmulator, facts: HubFacts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    group_key = Secret(facts.group_enrollment_key)
    settings = DpsSettings(
        dps_host=facts.dps_host, id_scope=facts.dps_id_scope, group_key=group_key
    )
    device_id = device_id_for(bytes.fromhex("c0ffee01"), "sim-a")
    with Journal.open(tmp_path / "state") as journal:
        provider = DpsProvider(settings, ca_pem=ca_pem(facts), cache=journal, timeout=10)
        creds = await provider.credentials(device_id, uid="c0ffee01")
        assert (creds.hostname, creds.device_id) == (facts.hostname, device_id)
        assert hub.device(device_id).device_id == device_id  # DPS created it in the registry
        assert journal.get_assignment(device_id) == facts.hostname
        async with link_for(creds, FAST) as link:
            await link.report_now({"mcu": {"uid": "c0ffee01"}})
        assert hub.twin(device_id).reported == {"mcu": {"uid": "c0ffee01"}}

        # A restart goes straight to the hub; forget() makes it register again.
        again = await provider.credentials(device_id, uid="c0ffee01")
        assert again == creds
        provider.forget(device_id)
        assert journal.get_assignment(device_id) is None

    derived = creds.symmetric_key
    assert derived is not None
    for secret in (group_key.reveal(), derived.reveal()):
        assert secret not in caplog.text
        assert secret not in repr(creds)


async def test_registry_mode_creates_the_device_once(hub: HubEmulator, facts: HubFacts) -> None:
    provider = RegistryProvider(
        RegistrySettings(Secret(facts.service_connection_string)),
        hostname=None,  # derived from the service connection string
        ca_file=facts.ca_path,
        ca_pem=ca_pem(facts),
        timeout=10,
    )
    creds = await provider.credentials("reg-0001")
    assert creds.hostname == facts.hostname
    assert hub.device("reg-0001").device_id == "reg-0001"
    assert await provider.credentials("reg-0001") == creds  # existing device: same key
    async with link_for(creds, FAST) as link:
        await link.report_now({"hello": "registry"})
    assert hub.twin("reg-0001").reported == {"hello": "registry"}


async def test_static_mode_from_a_config_file(hub: HubEmulator, tmp_path: Path) -> None:
    facts = hub.facts
    mcu = hub.create_device("static-mcu")
    gateway = hub.create_device("gw-1")
    (tmp_path / "strings.json").write_text(f'{{"0A1B": "{mcu}"}}')
    (tmp_path / "gw.cs").write_text(gateway)
    (tmp_path / "gw.toml").write_text(
        f"""
[gateway]
device_id = "gw-1"
state_dir = "state"
[hub]
mode = "static"
ca_file = "{facts.ca_path}"
connection_strings_file = "strings.json"
gateway_connection_string_file = "gw.cs"
[trust]
allow_unsigned = true
"""
    )
    config = load_config(tmp_path / "gw.toml")
    provider = provider_from_config(config.hub, gateway_device_id="gw-1")
    creds = await provider.credentials("anything-0a1b", uid="0a1b")
    assert creds.device_id == "static-mcu"  # the operator's id wins
    own = await provider.credentials("gw-1")
    for credentials in (creds, own):
        async with link_for(credentials, FAST) as link:
            await link.report_now({"up": True})
    assert hub.twin("static-mcu").reported == hub.twin("gw-1").reported == {"up": True}
    with pytest.raises(IdentityError, match="no connection string for uid ffff"):
        await provider.credentials("m-ffff", uid="ffff")

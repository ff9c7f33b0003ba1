"""Fault injection through the Python API, telemetry capture, and `mcu-gateway hub`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import Message
from azure.iot.device import exceptions as device_errors
from azure.iot.device.aio import IoTHubDeviceClient

from simulators.hub import HubEmulator, HubFacts
from tests.simulators.hub_fixtures import next_address

WAIT = 10.0


def _client(facts: HubFacts, connection_string: str) -> Any:
    return IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=Path(facts.ca_path).read_text()
    )


async def test_twin_faults_refuse_then_delay_then_clear(
    hub: HubEmulator, hub_facts: HubFacts
) -> None:
    client = _client(hub_facts, hub.create_device("dev-f"))
    try:
        await client.connect()
        hub.set_twin_fault(status=503)
        with pytest.raises((device_errors.ClientError, device_errors.ServiceError)):
            async with asyncio.timeout(WAIT):
                await client.patch_twin_reported_properties({"x": 1})
        hub.set_twin_fault(delay=0.3)
        async with asyncio.timeout(WAIT):
            await client.patch_twin_reported_properties({"x": 2})
        hub.set_twin_fault()
        assert (await client.get_twin())["reported"] == {"x": 2, "$version": 2}
    finally:
        await client.shutdown()


async def test_telemetry_is_captured_per_device(hub: HubEmulator, hub_facts: HubFacts) -> None:
    client = _client(hub_facts, hub.create_device("dev-t"))
    try:
        await client.connect()
        message = Message('{"t": 21.5}', content_type="application/json", content_encoding="utf-8")
        message.custom_properties["kind"] = "temp"
        await client.send_message(message)
        await asyncio.to_thread(hub.wait_for, lambda s: s.hub.telemetry.get("dev-t"), WAIT)
    finally:
        await client.shutdown()
    (captured,) = hub.telemetry("dev-t")
    assert json.loads(captured.body) == {"t": 21.5}
    assert captured.properties["kind"] == "temp"
    assert captured.properties["$.ct"] == "application/json"


def test_cli_prints_one_json_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    host = next_address()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "hub", "--state", str(tmp_path), "--host", host],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the test timeout; the hub prints at once
        facts = json.loads(line)
        assert facts["hostname"] == host
        assert Path(facts["ca_path"]).is_file()
        assert facts["service_connection_string"].startswith(f"HostName={host}:")
        assert facts["dps_id_scope"]
        assert facts["group_enrollment_key"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
        assert out == ""  # exactly one line of stdout
        assert facts["group_enrollment_key"] not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT)


def test_cli_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    from gateway.cli import main

    assert main(["hub", "--state", str(tmp_path), "--host", "10.1.2.3"]) == 1


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--time-scale", "nan", "--time-scale must be a positive number"),
        ("--time-scale", "0", "--time-scale must be a positive number"),
        ("--units", "0", "--units must be at least 1"),
    ],
)
def test_cli_refuses_bad_pacing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    from gateway.cli import main

    assert main(["hub", "--state", str(tmp_path), "--host", "127.0.0.1", flag, value]) == 1
    assert message in capsys.readouterr().err

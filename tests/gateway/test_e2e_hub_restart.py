"""Black box: the hub is killed (-9) mid-update and restarted; every later desired version lands.

Everything runs as its own process except the image server: the hub emulator
(``mcu-gateway hub``), the gateway (``mcu-gateway run``) and the MCU simulator.
The test sees only what an operator sees: the service API and the gateway's log.
After the hub comes back, three new desired versions must each be installed;
then the hub forgets every MQTT session (SIGUSR1, as a hub that lost its state)
and a fourth version and a direct method must still get through.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from msrest.exceptions import HttpOperationError

from gateway.lab import Lab
from gateway.naming import device_id_for
from simulators.hub import HubFacts
from tests.gateway.e2e import next_host

SIZE = 160 * 1024  # at 230400 baud: several seconds of flashing to kill the hub in
SMALL = 32 * 1024
SECRET = "s3cr3t"
POLL_S = 0.2  # the service API has no change events; poll it, always under a bound


class HubProcess:
    def __init__(self, state: Path, host: str) -> None:
        self.state, self.host = state, host
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> HubFacts:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "hub", "--state", str(self.state),
            "--host", self.host, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            line = await self.proc.stdout.readline()
        return HubFacts(**json.loads(line))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()


@asynccontextmanager
async def _processes(root: Path, host: str) -> AsyncIterator[tuple[HubProcess, Lab, Path]]:
    hub = HubProcess(root / "hub", host)
    facts = await hub.start()
    gateway: asyncio.subprocess.Process | None = None
    log = root / "gateway.log"
    try:
        async with Lab(root, host, ["vmcu-f4"], sim_args=("--baud", "230400"),
                       external_hub=facts) as lab:  # fmt: skip
            with log.open("wb") as out:
                gateway = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "run", "--config",
                    str(lab.write_config()), stdout=out, stderr=out,
                )  # fmt: skip
            yield hub, lab, log
    finally:
        if gateway is not None and gateway.returncode is None:
            gateway.terminate()
            async with asyncio.timeout(30):
                await gateway.wait()
        await hub.stop()


def _registry(facts: HubFacts) -> Any:
    from azure.iot.hub import IoTHubRegistryManager

    return IoTHubRegistryManager.from_connection_string(facts.service_connection_string)


async def _until(
    facts: HubFacts, device: str, predicate: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    """The device's reported firmware section, once ``predicate`` holds for it."""
    registry = _registry(facts)  # a fresh client: the hub may have restarted
    fw: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    twin = await asyncio.to_thread(registry.get_twin, device)
                except (HttpOperationError, requests.ConnectionError):
                    pass  # not registered through DPS yet, or the hub is starting
                else:
                    fw = (twin.properties.reported or {}).get("firmware") or {}
                    if predicate(fw):
                        return fw
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"{device}: twin firmware still {fw}") from None


def _current(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(fw: dict[str, Any]) -> bool:
        return fw.get("fwUpdateStatus") == "current" and fw.get("currentFwVersion") == version

    return check


async def _set_desired(facts: HubFacts, device: str, firmware: dict[str, Any]) -> None:
    from azure.iot.hub.models import Twin, TwinProperties

    twin = Twin(properties=TwinProperties(desired={"firmware": firmware}))
    await asyncio.to_thread(_registry(facts).update_twin, device, twin, "*")


def _with_secrets(url: str) -> str:
    # The image server ignores both, as blob storage checks them: they are credentials.
    return url.replace("https://", f"https://deploy:{SECRET}@") + f"?sv=2022&sig={SECRET}-sig"


async def test_hub_killed_mid_update_then_three_new_versions_all_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = next_host()
    async with _processes(tmp_path, host) as (hub, lab, log):
        facts = lab.facts
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", facts.ca_path)
        sim = lab.sims[0]
        device = device_id_for(bytes.fromhex(sim.uid), sim.model)
        await _until(facts, device, _current("1.0.0"), within=60)

        big = lab.release("2.0.0", "vmcu-f4", size=SIZE)
        await _set_desired(facts, device, big.desired(fwPackageURI=_with_secrets(big.url)))
        await _until(facts, device, lambda fw: fw.get("bytesWritten", 0) >= SIZE // 5, 60)
        await hub.kill()  # kill -9 mid-flash
        assert await hub.start() == facts  # same state directory: same hub
        await _until(facts, device, _current("2.0.0"), within=90)

        for version in ("3.0.0", "4.0.0", "5.0.0"):
            rel = lab.release(version, "vmcu-f4", size=SMALL)
            await _set_desired(facts, device, rel.desired(fwPackageURI=_with_secrets(rel.url)))
            await _until(facts, device, _current(version), within=60)

        hub.signal(signal.SIGUSR1)  # the hub forgets every MQTT session
        rel = lab.release("6.0.0", "vmcu-f4", size=SMALL)
        await _set_desired(facts, device, rel.desired())
        fw = await _until(facts, device, _current("6.0.0"), within=60)
        assert fw.get("pendingFwVersion") is None and fw.get("error") is None

        from azure.iot.hub.models import CloudToDeviceMethod

        method = CloudToDeviceMethod(method_name="getInfo", response_timeout_in_seconds=10)
        answer = await asyncio.to_thread(_registry(facts).invoke_device_method, device, method)
        assert answer.status == 200
        reported = await asyncio.to_thread(_registry(facts).get_twin, device)
    text = log.read_text(errors="replace")
    assert "update to 6.0.0: current" in text
    assert SECRET not in text, "a URL secret reached the gateway log"
    assert SECRET not in json.dumps(reported.properties.reported), "a URL secret reached the twin"

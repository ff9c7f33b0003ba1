"""Shared pieces of the gateway end-to-end tests: a lab plus a gateway running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.lab import Lab
from gateway.service import Gateway
from simulators.hub.server import HubServer
from tests.net import addr

_hosts = itertools.count(1)


def next_host() -> str:
    # Each test its own address: the SDK's MQTT port is fixed at 8883.
    return addr(6, next(_hosts) % 250 + 1)


@dataclass
class Running:
    lab: Lab
    gateway: Gateway
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def halt(self) -> None:
        self.stop.set()
        async with asyncio.timeout(30):
            await self.task


def launch(lab: Lab, config: Path) -> Running:
    """Run a gateway in this event loop from a configuration file."""
    gateway = Gateway(load_config(config))
    stop = asyncio.Event()
    return Running(lab, gateway, stop, asyncio.create_task(gateway.run(stop)))


async def start_gateway(lab: Lab, **policy: Any) -> Running:
    return launch(lab, lab.write_config(**policy))


@contextlib.asynccontextmanager
async def running_lab(
    tmp_path: Path,
    models: Sequence[str],
    sim_args: Sequence[str] = ("--baud", "921600"),
    **policy: Any,
) -> AsyncIterator[Running]:
    async with Lab(tmp_path, next_host(), models, sim_args=sim_args) as lab:
        run = await start_gateway(lab, **policy)
        try:
            yield run
        finally:
            if not run.task.done():
                await run.halt()


async def wait_hub(lab: Lab, predicate: Callable[[HubServer], Any], within: float) -> Any:
    """Bounded wait on the hub's state, off the event loop (the hub has its own thread)."""
    assert lab.hub is not None
    return await asyncio.to_thread(lab.hub.wait_for, predicate, within)


def reported(server: HubServer, device_id: str) -> dict[str, Any]:
    twin = server.hub.twins.get(device_id)
    return twin.reported if twin is not None else {}


def firmware_of(server: HubServer, device_id: str) -> dict[str, Any]:
    fw = reported(server, device_id).get("firmware")
    return fw if isinstance(fw, dict) else {}


def statuses(lab: Lab, device_id: str) -> list[str]:
    """The fwUpdateStatus values this device reported, consecutive repeats removed."""
    assert lab.hub is not None
    seen: list[str] = []
    for patch in lab.hub.reported_patches(device_id):
        status = (patch.get("firmware") or {}).get("fwUpdateStatus")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
    return seen


def set_desired(lab: Lab, device_id: str, firmware: Any) -> None:
    from azure.iot.hub.models import Twin, TwinProperties

    registry = lab.registry()
    registry.update_twin(
        device_id, Twin(properties=TwinProperties(desired={"firmware": firmware})), "*"
    )


def device_ids(run: Running) -> list[str]:
    """Agents' device ids in sim order."""
    by_uid = {a.uid: a.device_id for a in run.gateway.agents.values()}
    return [by_uid[s.uid] for s in run.lab.sims]


async def wait_current(
    lab: Lab, device_id: str, version: str, within: float = 90
) -> dict[str, Any]:
    """Wait until the twin reports ``version`` as current; returns its firmware section."""

    def current(s: HubServer) -> bool:
        fw = firmware_of(s, device_id)
        return fw.get("fwUpdateStatus") == "current" and fw.get("currentFwVersion") == version

    await wait_hub(lab, current, within)
    assert lab.hub is not None
    return firmware_of(lab.hub.call(lambda s: s), device_id)

"""`mcu-gateway demo`: the whole product on one machine, no hardware, no cloud.

Starts the IoT Hub/DPS emulator, an HTTPS image server and N virtual MCUs on
ptys, runs the gateway, publishes a signed v2 package, sets every MCU's desired
firmware through the official service SDK, shows live progress and exits 0
only when every twin reports the new version as current.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError

MODELS = ("vmcu-f4", "vmcu-l0", "vmcu-h7")
#: ``--mix``: our protocol, the STM32 ROM bootloader and MCUboot side by side.
MIXED = ("vmcu-f4", "stm32f103", "vmcu_nrf52840", "vmcu-l0")
#: Largest payload for the other bootloaders' simulated parts (an F103 has 128 KiB).
_OTHER_MAX = 96 * 1024
NEW_VERSION = "2.0.0"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="end-to-end demo: hub emulator, virtual MCUs, signed rollout")
    p.add_argument("--mcus", type=int, default=4, help="number of virtual MCUs (default 4)")
    p.add_argument("--baud", type=int, default=921600, help="simulated UART rate")
    p.add_argument("--size", type=int, default=192 * 1024, help="firmware payload bytes")
    p.add_argument("--state", type=Path, help="keep everything in this directory")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many s")
    p.add_argument(
        "--mix",
        action="store_true",
        help="mix bootloaders: ours, the STM32 ROM bootloader and MCUboot",
    )
    p.add_argument("--rollout", action="store_true",
                   help="phased rollouts in rings (fleet CLI logic); one model's package is "
                        "refused, so its rollout halts")  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not 1 <= args.mcus <= 64:
        raise CommandError("--mcus must be between 1 and 64")
    if args.baud < 9600:
        raise CommandError("--baud must be at least 9600")
    with tempfile.TemporaryDirectory(prefix="mcu-demo-") as tmp:
        root = args.state or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        _log_to_file(root / "gateway.log")
        return asyncio.run(_demo(args, root))


def _log_to_file(path: Path) -> None:
    from gateway.logs import setup_logging

    setup_logging("text", "INFO")
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    handler.setFormatter(root.handlers[0].formatter)
    for f in root.handlers[0].filters:
        handler.addFilter(f)
    root.handlers[:] = [handler]  # the console belongs to the live table


async def _start_lab(root: Path, models: list[str], baud: int) -> Any:
    from gateway.lab import Lab
    from simulators.hub.addresses import first_free_async
    from simulators.hub.errors import StartupError

    async def start(address: str) -> Lab:
        lab = Lab(root / f"lab-{address.rsplit('.', 1)[1]}", address, models,
                  ("--baud", str(baud)), baud, hub_time_scale=600)  # fmt: skip
        await lab.__aenter__()
        return lab

    try:  # another hub (or demo) may hold an address's port 8883
        return await first_free_async((f"127.77.0.{n}" for n in range(1, 40)), start)
    except StartupError as exc:
        raise CommandError(f"cannot start the hub emulator: {exc}") from exc


async def _demo(args: argparse.Namespace, root: Path) -> int:
    from rich.console import Console

    from gateway.config import load_config
    from gateway.service import Gateway

    console = Console()
    kinds = MIXED if args.mix else MODELS
    models = [kinds[i % len(kinds)] for i in range(args.mcus)]
    console.print(f"[bold]mcu-gateway demo[/]: {args.mcus} virtual MCUs at {args.baud} baud, "
                  f"state in {root}")  # fmt: skip
    lab = await _start_lab(root, models, args.baud)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        console.print(f"hub + DPS emulator on {lab.host}:8883 (TLS), images on "
                      f"https://{lab.host}:{lab.images.https_port}/")  # fmt: skip
        gateway = Gateway(load_config(lab.write_config()))
        task = asyncio.create_task(gateway.run(stop))
        deadline = time.monotonic() + args.timeout
        await _wait_online(lab, gateway, args.mcus, deadline, console)
        devices = {a.uid: a for a in gateway.agents.values()}
        order = [devices[s.uid] for s in lab.sims]
        old = {a.device_id: _version(a) for a in order}
        if args.rollout:
            from gateway.cli.demo_rollout import run_rollout

            size = lambda m: _size(m, args.size)  # noqa: E731
            return await run_rollout(lab, order, console, deadline, size, NEW_VERSION)
        releases = {m: lab.release(NEW_VERSION, m, _size(m, args.size)) for m in set(models)}
        console.print(f"signed {NEW_VERSION} packages published; setting desired firmware "
                      "through the IoT Hub service API")  # fmt: skip
        await asyncio.to_thread(
            _set_all,
            lab,
            [(a.device_id, releases[s.model]) for s, a in zip(lab.sims, order, strict=True)],
        )
        ok = await _watch(lab, order, deadline, console)
        _summary(console, order, old, args.baud)
        if not ok:
            console.print("[red]not every MCU reached the new version[/]; see "
                          f"{root}/gateway.log")  # fmt: skip
            return 1
        console.print(f"[green]all {args.mcus} MCUs report {NEW_VERSION} as current[/]")
        return 0
    finally:
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await lab.__aexit__(None, None, None)


def _size(model: str, wanted: int) -> int:
    from gateway.lab import OTHER_KINDS
    from simulators.mcu.models import MODELS as SPECS

    if model in OTHER_KINDS:
        return min(wanted, _OTHER_MAX)
    return min(wanted, SPECS[model].slot_size)


def _version(agent: Any) -> str:
    return agent.installed or "-"


def _set_all(lab: Any, targets: list[tuple[str, Any]]) -> None:
    from azure.iot.hub.models import Twin, TwinProperties

    registry = lab.registry()
    for device_id, release in targets:
        patch = Twin(properties=TwinProperties(desired={"firmware": release.desired()}))
        registry.update_twin(device_id, patch, "*")


async def _wait_online(lab: Any, gateway: Any, n: int, deadline: float, console: Any) -> None:
    def all_online(server: Any) -> bool:
        agents = list(gateway.agents.values())
        return len(agents) == n and all(server.hub.is_connected(a.device_id) for a in agents)

    with console.status(f"bringing {n} MCUs online (DPS registration, one device each)"):
        try:
            # The hub re-checks on every change of its own, in its thread.
            await asyncio.to_thread(
                lab.hub.wait_for, all_online, max(1.0, deadline - time.monotonic())
            )
        except TimeoutError as exc:
            raise CommandError(f"only {len(gateway.agents)} of {n} MCUs came online") from exc
    console.print(f"{n} MCUs online as IoT Hub devices: "
                  + ", ".join(a.device_id for a in gateway.agents.values()))  # fmt: skip


async def _firmware(lab: Any, device_id: str) -> dict[str, Any]:
    twin = await asyncio.to_thread(lab.hub.twin, device_id)
    fw = twin.reported.get("firmware")
    return fw if isinstance(fw, dict) else {}


async def _watch(lab: Any, agents: list[Any], deadline: float, console: Any) -> bool:
    from rich.live import Live

    def done(fw: dict[str, Any]) -> bool:
        return fw.get("fwUpdateStatus") == "current" and fw.get("currentFwVersion") == NEW_VERSION

    def failed(fw: dict[str, Any]) -> bool:
        return fw.get("fwUpdateStatus") in ("error", "rolledback")

    states: list[dict[str, Any]] = [{} for _ in agents]
    with Live(_table(agents, states), console=console, refresh_per_second=8) as live:
        while time.monotonic() < deadline:
            states = [await _firmware(lab, a.device_id) for a in agents]
            live.update(_table(agents, states))
            if all(done(fw) or failed(fw) for fw in states):
                break
            await asyncio.sleep(0.125)  # display refresh, bounded by the deadline
    return all(done(fw) for fw in states)


def _table(agents: list[Any], states: list[dict[str, Any]]) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table(title="firmware rollout", expand=False)
    for col in ("MCU device id", "model", "status", "progress", "%", "version"):
        table.add_column(col)
    for agent, fw in zip(agents, states, strict=True):
        pct = int(fw.get("progress", 0) or 0)
        status = str(fw.get("fwUpdateStatus", "…"))
        colour = {"current": "green", "error": "red", "rolledback": "red"}.get(status, "yellow")
        table.add_row(
            agent.device_id,
            agent.facts.model,
            f"[{colour}]{status}[/]",
            ProgressBar(total=100, completed=pct, width=30),
            f"{pct:3d}",
            str(fw.get("currentFwVersion", "")),
        )
    return table


def _summary(console: Any, agents: list[Any], old: dict[str, str], baud: int) -> None:
    from rich.table import Table

    table = Table(title="summary")
    for col in ("MCU", "old", "new", "seconds", "bytes", "link efficiency"):
        table.add_column(col, justify="right" if col in ("seconds", "bytes") else "left")
    for agent in agents:
        r = agent.last_result
        seconds = r.get("seconds", 0.0)
        size = r.get("bytes", 0)
        eff = (size / seconds) / (baud / 10) if seconds else 0.0
        table.add_row(
            agent.device_id,
            old[agent.device_id],
            _version(agent),
            f"{seconds:.2f}",
            str(size),
            f"{eff:.3f}",
        )
    console.print(table)

"""`mcu-gateway info`: identity, capabilities and slots of one MCU (changes nothing)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.serial_common import add_driver_args, driver_options, run_with_driver
from protocols.driver import DeviceFacts, Driver, DriverSpec, SlotFacts


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("info", help="show an MCU's identity, capabilities and slots")
    add_driver_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def slot_dict(s: SlotFacts) -> dict[str, Any]:
    return {
        "index": s.index,
        "state": s.state.value,
        "version": s.version,
        "size": s.size,
        "sha256": s.sha256,
        "boot_count": s.boot_count,
    }


def facts_dict(f: DeviceFacts) -> dict[str, Any]:
    """The same keys for every driver; protocol specifics sit under ``details``."""
    running = next((s for s in f.slots if s.running), None)
    return {
        "driver": f.driver,
        "uid": f.uid,
        "model": f.model,
        "compat": f.compat,
        "bootloader_version": f.bootloader_version,
        "protocol_version": f.protocol_version,
        "mode": "bootloader" if f.in_bootloader else "app",
        "installed_version": f.installed_version,
        "running_slot": None if running is None else running.index,
        "running_version": None if running is None else running.version,
        "safety": f.safety.value,
        "capabilities": sorted(c.value for c in f.capabilities),
        "capacity": f.capacity,
        "slots": [slot_dict(s) for s in f.slots],
        "details": dict(f.details),
    }


def render(d: dict[str, Any]) -> str:
    lines = [
        f"MCU        {d['model']}  uid {d['uid']}",
        f"compat     {d['compat']}   bootloader {d['bootloader_version']} "
        f"({d['driver']} protocol v{d['protocol_version']})",
        f"running    {d['mode']}, installed {d['installed_version'] or '-'}"
        + (f" (slot {d['running_slot']})" if d["running_slot"] is not None else ""),
        f"safety     {d['safety']}; {', '.join(d['capabilities']) or 'no capabilities'}",
        f"capacity   {d['capacity']} B",
    ]
    for s in d["slots"]:
        marker = "*" if s["index"] == d["running_slot"] else " "
        lines.append(
            f"slot {s['index']}{marker}    {s['state']:<9} {s['version'] or '-':<12} "
            f"{s['size']:>8} B  sha256 {s['sha256'] or '-'}"
        )
    if d["details"]:
        lines.append("details    " + "  ".join(f"{k}={v}" for k, v in d["details"].items()))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    async def body(spec: DriverSpec, driver: Driver, facts: DeviceFacts) -> dict[str, Any]:
        return facts_dict(facts)

    d = run_with_driver(args, driver_options(args), body)
    print(json.dumps(d) if args.json else render(d))
    return 0

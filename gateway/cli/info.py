"""`mcu-gateway info`: identity, capabilities and slots of one MCU (changes nothing)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.serial_common import add_driver_args, driver_options, run_with_driver
from gateway.facts import facts_dict
from protocols.driver import DeviceFacts, Driver, DriverSpec


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("info", help="show an MCU's identity, capabilities and slots")
    add_driver_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


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

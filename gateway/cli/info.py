"""`mcu-gateway info`: identity, capabilities and slots of one MCU (changes nothing)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.serial_common import run_with_session
from gateway.reported import slots_section
from protocols.packets import HelloResponse, InfoResponse
from protocols.session import BootloaderSession


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("info", help="show an MCU's identity, capabilities and slots")
    p.add_argument("--port", required=True, help="serial device, socket://HOST:PORT or loop://")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def info_dict(hello: HelloResponse, info: InfoResponse) -> dict[str, Any]:
    geo = info.geometry
    running = info.running_slot if info.running_slot < len(info.slots) else None
    return {
        "uid": info.uid.hex(),
        "model": info.model,
        "compat": info.compat,
        "bootloader_version": info.bootloader_version,
        "protocol_version": hello.protocol_version,
        "mode": info.mode.name.lower(),
        "capabilities": [c.name for c in type(hello.capabilities) if c in hello.capabilities],
        "max_data": hello.max_data,
        "window": hello.window,
        "running_slot": running,
        "running_version": None if running is None else info.slots[running].version,
        "geometry": {
            "slot_size": geo.slot_size,
            "sector_size": geo.sector_size,
            "write_size": geo.write_size,
            "page_size": geo.page_size,
            "erase_us": geo.erase_us,
            "program_us": geo.program_us,
            "hash_us_per_kib": geo.hash_us_per_kib,
            "boot_ms": geo.boot_ms,
            "max_trial_boots": geo.max_trial_boots,
        },
        "slots": slots_section(info),
    }


def render(d: dict[str, Any]) -> str:
    g = d["geometry"]
    lines = [
        f"MCU        {d['model']}  uid {d['uid']}",
        f"compat     {d['compat']}   bootloader {d['bootloader_version']}",
        f"running    {d['mode']}"
        + (
            f", slot {d['running_slot']} version {d['running_version']}"
            if d["running_slot"] is not None
            else ""
        ),
        f"protocol   v{d['protocol_version']}  caps {','.join(d['capabilities'])}  "
        f"max data {d['max_data']} B  window {d['window']} B",
        f"flash      slot {g['slot_size'] // 1024} KiB, sector {g['sector_size']} B "
        f"({g['erase_us'] / 1000:g} ms), page {g['page_size']} B ({g['program_us'] / 1000:g} ms), "
        f"write {g['write_size']} B",
    ]
    for s in d["slots"]:
        marker = "*" if s["index"] == d["running_slot"] else " "
        lines.append(
            f"slot {s['index']}{marker}    {s['state']:<9} {s['version'] or '-':<12} "
            f"{s['size']:>8} B  sha256 {s['sha256']}"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    async def body(session: BootloaderSession) -> dict[str, Any]:
        hello = await session.hello()
        info = await session.info()
        return info_dict(hello, info)

    d = run_with_session(args.port, args.baud, body)
    print(json.dumps(d) if args.json else render(d))
    return 0

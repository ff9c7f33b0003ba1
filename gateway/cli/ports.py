"""`mcu-gateway ports`: the serial ports here, with USB VID:PID, and which bootloader answers.

As ``esptool``/``mcumgr`` users expect: pyserial's ``list_ports`` finds the ports
(with ``--probe`` each is asked, in turn, by every driver). Ports the system does
not enumerate, such as the simulators' pseudo-terminals, can be named on the
command line or in ``$MCU_GATEWAY_PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from gateway.cli.common import CommandError, positive_float

DEFAULT_PROBE_TIMEOUT_S = 5.0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "ports",
        help="list serial ports (USB VID:PID) and, with --probe, the bootloader on each",
        description="List the serial ports pyserial finds, plus any PORT given here or in "
        "$MCU_GATEWAY_PORT. With --probe, each port is asked by every bootloader driver in "
        "turn (as `info` does without --bootloader); a probe changes nothing on the device.",
    )
    p.add_argument("extra", nargs="*", metavar="PORT", help="also list (and probe) these ports")
    p.add_argument("--probe", action="store_true", help="ask each port which bootloader answers")
    p.add_argument("-b", "--baud", type=int, default=115200, help="baud rate for --probe")
    p.add_argument(
        "--probe-timeout",
        type=positive_float,
        default=DEFAULT_PROBE_TIMEOUT_S,
        metavar="S",
        help="give up on a port after S seconds",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per port")
    p.set_defaults(func=_run)


@dataclass
class PortRow:
    device: str
    vid_pid: str = ""  # "0483:5740" for USB adapters
    serial_number: str = ""
    description: str = ""
    bootloader: str = ""  # with --probe: the driver that answered, else why none did
    model: str = ""


def row_of(info: Any) -> PortRow:
    """One ``serial.tools.list_ports_common.ListPortInfo`` as a row."""
    vid, pid = getattr(info, "vid", None), getattr(info, "pid", None)
    desc = getattr(info, "description", "") or ""
    return PortRow(
        device=info.device,
        vid_pid=f"{vid:04x}:{pid:04x}" if vid is not None and pid is not None else "",
        serial_number=getattr(info, "serial_number", "") or "",
        description="" if desc == "n/a" else desc,
    )


def _rows(extra: list[str]) -> list[PortRow]:
    from serial.tools import list_ports

    rows = [row_of(p) for p in sorted(list_ports.comports(), key=lambda p: p.device)]
    env = os.environ.get("MCU_GATEWAY_PORT", "")
    for device in [*extra, *([env] if env else [])]:
        if all(r.device != device for r in rows):
            rows.append(PortRow(device=device))
    return rows


async def _probe(row: PortRow, baud: int, timeout: float) -> None:  # noqa: ASYNC109
    from protocols import registry
    from protocols.driver import DriverError, DriverOptions

    try:
        async with asyncio.timeout(timeout):
            spec, facts = await registry.detect(
                row.device, DriverOptions(baud=baud), registry.probe_order()
            )
    except TimeoutError:
        row.bootloader = f"-  (no answer within {timeout:g} s)"
        return
    except DriverError as exc:
        row.bootloader = f"-  ({exc.message})"
        return
    row.bootloader, row.model = spec.name, facts.model


def _run(args: argparse.Namespace) -> int:
    rows = _rows(args.extra)
    if args.probe:
        for row in rows:  # one at a time: probing a port may take the whole timeout
            asyncio.run(_probe(row, args.baud, args.probe_timeout))
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
        return 0
    if not rows:
        raise CommandError("no serial ports found (name one: mcu-gateway ports PORT)")
    for row in rows:
        cols = [f"{row.device:<20}", f"{row.vid_pid or '-':<9}"]
        if args.probe:
            cols.append(f"{row.bootloader:<10} {row.model}".rstrip())
        cols.append(" ".join(x for x in (row.description, row.serial_number) if x))
        print("  ".join(cols).rstrip())
    return 0

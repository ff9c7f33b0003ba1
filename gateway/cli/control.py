"""`mcu-gateway reset` and `mcu-gateway abort`: get an MCU's application running again.

A flash interrupted by Ctrl-C (or a crash of the host) leaves the MCU in its
bootloader; these run the installed application again through the driver seam's
``reboot()`` and ``abort()``, so they work the same for every bootloader.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.serial_common import add_driver_args, driver_options, run_with_driver
from protocols.driver import DeviceFacts, Driver, DriverSpec

_HELP = {
    "reset": (
        "start the MCU's installed application (if it is intact)",
        "Leave the bootloader and run the installed application, e.g. after an "
        "interrupted flash. A staged transfer is kept, so a later flash of the same "
        "image resumes. Changes no flash contents.",
    ),
    "abort": (
        "drop a staged transfer, then start the installed application",
        "Drop whatever a transfer left in the inactive slot (the installed image is "
        "never touched), then run the installed application.",
    ),
}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    for name, (summary, description) in _HELP.items():
        p = sub.add_parser(name, help=summary, description=description)
        add_driver_args(p)
        p.add_argument("--json", action="store_true", help="print the MCU's facts afterwards")
        p.set_defaults(func=_run, action=name)


def _run(args: argparse.Namespace) -> int:
    from gateway.facts import facts_dict

    async def body(spec: DriverSpec, driver: Driver, facts: DeviceFacts) -> dict[str, Any]:
        after = await (driver.reboot() if args.action == "reset" else driver.abort())
        return facts_dict(after)

    d = run_with_driver(args, driver_options(args), body)
    if args.json:
        print(json.dumps(d))
    else:
        where = "bootloader" if d["mode"] == "bootloader" else "application"
        slot = f" (slot {d['running_slot']})" if d["running_slot"] is not None else ""
        print(f"{args.port}: {d['model']} running its {where}, version "
              f"{d['installed_version'] or '-'}{slot}")  # fmt: skip
    return 0

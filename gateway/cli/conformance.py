"""`mcu-gateway conformance`: check a device against docs/protocol.md, section by section."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError
from gateway.cli.serial_common import add_port_args


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "conformance",
        help="check that a device follows the mcugw serial protocol",
        description="Run the protocol conformance checks against one device. Each check "
        "names its section of docs/protocol.md. Without --write nothing is programmed "
        "(the device is put in its bootloader with RESET(STAY) and left running its app "
        "again if it was). With --write a scratch image is transferred into the inactive "
        "slot, verified, activated and trial-booted.",
    )
    add_port_args(p)
    p.add_argument("--write", action="store_true", help="also run the checks that write flash")
    p.add_argument(
        "--check", action="append", metavar="ID", help="run only this check (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from protocols.errors import PortNotFound
    from protocols.mcugw.conformance import CHECKS, CheckResult, junit_xml, run_suite
    from protocols.trace import traced
    from protocols.transport import open_transport

    known = {c.id for c in CHECKS}
    only = set(args.check) if args.check else None
    if only is not None and only - known:
        raise CommandError(
            f"unknown check {sorted(only - known)[0]!r}; known: {', '.join(sorted(known))}"
        )

    def show(r: CheckResult) -> None:
        if args.json:
            return
        mark = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}[r.outcome]
        tail = f"  ({r.detail})" if r.detail else ""
        print(f"{mark}  {r.section:<6} {r.id:<22} {r.title}{tail}", flush=True)
        if r.outcome == "fail":
            for rule in r.rules:  # the sentences of docs/protocol.md it broke
                print(f"      rule {rule}", flush=True)

    async def go() -> Any:
        try:
            transport = traced(await open_transport(args.port, args.baud), args.port)
        except PortNotFound as exc:
            raise CommandError(str(exc)) from exc
        try:
            return await run_suite(
                transport,
                port=args.port,
                baud=args.baud,
                write=args.write,
                only=only,
                progress=show,
            )
        finally:
            await transport.close()

    report = asyncio.run(go())
    if args.junit is not None:
        args.junit.write_bytes(junit_xml(report))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        summary = (
            f"{report.count('pass')} passed, {report.count('fail')} failed, "
            f"{report.count('skip')} skipped"
        )
        print(summary, file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1

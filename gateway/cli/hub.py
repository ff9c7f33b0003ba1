"""`mcu-gateway hub`: the local IoT Hub + DPS emulator.

Prints one JSON line of connection facts, flushed, then serves until SIGTERM
or SIGINT. Faults for black-box runs: SIGUSR1 makes the hub forget every
MQTT session (as if it lost its state), SIGUSR2 drops every connection.
The facts include the service connection string and group key on purpose:
they are what a developer or CI job needs to connect.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "hub",
        help="run the local IoT Hub + DPS emulator",
        description="Run the local IoT Hub and DPS emulator (MQTT/TLS on HOST:8883, HTTPS REST). "
        "Faults: SIGUSR1 forgets every MQTT session, SIGUSR2 drops every connection.",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=Path("state/hub"),
        help="state directory (default: %(default)s)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="N",
        help="run IoT Hub's cadences N times faster, all together: configuration evaluation "
        "(5 min), query lag, throttle windows (default 1: real pace)",
    )
    p.add_argument(
        "--tier",
        choices=("F1", "S1", "S2", "S3"),
        default="S1",
        help="IoT Hub tier whose throttles and limits apply (default S1)",
    )
    p.add_argument("--units", type=int, default=1, help="IoT Hub units (default 1)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            raise CommandError(f"--host {args.host}: the emulator listens on loopback only")
    except ValueError as exc:
        raise CommandError(f"--host {args.host}: not an IP address") from exc
    if not (0 < args.time_scale < math.inf):
        raise CommandError("--time-scale must be a positive number")
    if args.units < 1:
        raise CommandError("--units must be at least 1")
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import sys

    from simulators.hub import HubEmulatorError, HubServer
    from simulators.hub.throttling import Tier
    from simulators.hub.timing import Timing

    server = HubServer(
        args.state, args.host, timing=Timing(args.time_scale), tier=Tier(args.tier),
        units=args.units,
    )  # fmt: skip
    try:
        facts = await server.start()
    except HubEmulatorError as exc:
        raise CommandError(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: server.hub.drop_sessions())
    loop.add_signal_handler(signal.SIGUSR2, lambda: server.broker.drop_all())
    try:
        print(facts.to_json(), flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
            loop.remove_signal_handler(sig)
        await server.stop()
    print("hub emulator stopped", file=sys.stderr)
    return 0

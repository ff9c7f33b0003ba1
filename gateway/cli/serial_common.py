"""Shared plumbing for commands that talk to one MCU: pick a driver, open, translate errors."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.cli.common import CommandError, baud_rate
from protocols import registry
from protocols.driver import DeviceFacts, Driver, DriverError, DriverOptions, DriverSpec

T = TypeVar("T")
PORT_ENV = "MCU_GATEWAY_PORT"
Body = Callable[[DriverSpec, Driver, DeviceFacts], Awaitable[T]]


def add_port_args(p: argparse.ArgumentParser) -> None:
    """``-p/--port`` (default ``$MCU_GATEWAY_PORT``) and ``-b/--baud``, as esptool has them."""
    env = os.environ.get(PORT_ENV, "")
    p.add_argument(
        "-p",
        "--port",
        default=env or None,
        required=not env,
        help=f"serial device, socket://HOST:PORT or loop:// (default: ${PORT_ENV})",
    )
    p.add_argument(
        "-b",
        "--baud",
        type=baud_rate,
        default=115200,
        help="link rate in bits per second; 0 for sockets and unpaced simulators",
    )


def add_driver_args(p: argparse.ArgumentParser) -> None:
    add_port_args(p)
    p.add_argument(
        "--bootloader",
        metavar="NAME",
        help="bootloader driver: " + ", ".join(registry.names()) + " (default: try each)",
    )
    p.add_argument(
        "--driver-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="driver-specific setting, e.g. reset_line=dtr; C escapes such as \\n work "
        "in VALUE (repeatable)",
    )


def _value(text: str) -> str | int | bool:
    if text.lower() in ("true", "yes", "on"):
        return True
    if text.lower() in ("false", "no", "off"):
        return False
    try:
        return int(text, 0)
    except ValueError:
        return text


def _unescape(item: str, value: str) -> str:
    r"""C escapes (``enter_command=bootloader\n``), since a shell cannot easily type a newline."""
    if "\\" not in value:
        return value
    try:
        return codecs.decode(value, "unicode_escape")
    except UnicodeDecodeError as exc:
        raise CommandError(f"--driver-opt {item!r}: bad escape: {exc.reason}") from exc


def driver_options(args: argparse.Namespace, **fields: Any) -> DriverOptions:
    extra: dict[str, str | int | bool] = {}
    for item in args.driver_opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--driver-opt {item!r}: expected KEY=VALUE")
        extra[key.strip()] = _value(_unescape(item, value.strip()))
    return DriverOptions(baud=args.baud, extra=extra, **fields)


def run_with_driver(args: argparse.Namespace, options: DriverOptions, body: Body[T]) -> T:
    """Open ``args.port`` with ``--bootloader`` (or the first driver that answers), run ``body``."""
    try:
        order = registry.probe_order([args.bootloader] if args.bootloader else [])
        registry.check_options(options.extra, order)
    except registry.UnknownDriver as exc:
        raise CommandError(str(exc)) from exc
    except registry.UnknownOption as exc:
        raise CommandError(f"--driver-opt: {exc}") from exc

    async def main() -> T:
        async with registry.connect(args.port, options, order) as (spec, driver, facts):
            return await body(spec, driver, facts)

    try:
        return asyncio.run(main())
    except DriverError as exc:
        raise CommandError(describe(exc, args.port)) from exc


def describe(exc: DriverError, port: str) -> str:
    """One line naming the port and what went wrong."""
    if port in exc.message:
        return exc.message
    return f"{port}: {exc.message}"

"""`mcu-gateway flash`: not implemented yet."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("flash", help="(not implemented yet)")
    p.set_defaults(func=_flash)


def _flash(args: argparse.Namespace) -> int:
    raise CommandError("'flash' is not implemented yet")

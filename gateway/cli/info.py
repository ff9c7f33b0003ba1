"""`mcu-gateway info`: not implemented yet."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("info", help="(not implemented yet)")
    p.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    raise CommandError("'info' is not implemented yet")

"""`mcu-gateway run`: not implemented yet."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="(not implemented yet)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise CommandError("'run' is not implemented yet")

"""`mcu-gateway sim`: not implemented yet."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("sim", help="(not implemented yet)")
    p.set_defaults(func=_sim)


def _sim(args: argparse.Namespace) -> int:
    raise CommandError("'sim' is not implemented yet")

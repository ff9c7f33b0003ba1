"""`mcu-gateway demo`: not implemented yet."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="(not implemented yet)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    raise CommandError("'demo' is not implemented yet")

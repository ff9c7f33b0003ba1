"""Shared CLI plumbing: the one exception every command raises, and argument types.

The argument types turn bad values into argparse's one-line usage error
(``mcu-gateway flash: error: argument -b/--baud: ...``) instead of a traceback
further down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Rates a UART (and Linux termios) knows by name; --fast-baud takes one of these.
STANDARD_BAUDS = (
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000,
    921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
)  # fmt: skip


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, then a non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def baud_rate(text: str) -> int:
    """A link rate in bits per second; 0 means unpaced (sockets, the simulator's --baud 0)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a baud rate (bits per second)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a baud rate (0 or more)")
    return value


def fast_baud_rate(text: str) -> int:
    """0 (stay at --baud) or a standard UART rate."""
    value = baud_rate(text)
    if value and value not in STANDARD_BAUDS:
        near = ", ".join(str(b) for b in STANDARD_BAUDS if b >= 9600)
        raise argparse.ArgumentTypeError(f"{value} is not a standard UART rate ({near})")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def add_trust_args(p: argparse.ArgumentParser, help: str) -> None:
    """``--trust PUBKEY`` (repeatable); ``--pubkey``, its old name in `image`, still works."""
    p.add_argument("--trust", action="append", default=[], type=Path, metavar="PUBKEY", help=help)
    p.add_argument("--pubkey", action="append", dest="trust", type=Path, help=argparse.SUPPRESS)


def check_trust_files(paths: list[Path]) -> None:
    """One clear line for a key file that is not there, before anyone tries to parse it."""
    for path in paths:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise CommandError(f"cannot read --trust {path}: {exc.strerror or exc}") from exc

"""The `mcu-gateway` command line.

Each sub-command lives in its own module exposing ``register(subparsers)``;
heavy imports happen inside the command so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from firmware.urls import redact_text
from gateway.cli.common import CommandError

# Modules in the order their commands show in --help (control: reset and abort).
_COMMANDS = (
    "sim", "info", "flash", "control", "conformance", "image", "hub", "run", "fleet", "adu", "demo",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcu-gateway",
        description="Firmware update translation gateway for UART-attached MCUs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        module = importlib.import_module(f"gateway.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        # Errors may quote a package URL; its userinfo and query are credentials.
        message = redact_text(str(exc))
        print(f"mcu-gateway {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mcu-gateway {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

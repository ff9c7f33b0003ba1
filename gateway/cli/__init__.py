"""The `mcu-gateway` command line.

Each sub-command lives in its own module exposing ``register(subparsers)``;
heavy imports happen inside the command so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from firmware.urls import redact_text
from gateway.cli.common import CommandError

# Modules in the order their commands show in --help (control: reset and abort).
_COMMANDS = (
    "sim", "ports", "info", "flash", "control", "conformance", "image", "hub", "run", "fleet",
    "adu", "demo",
)  # fmt: skip


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = (action.help or "").strip()
        default = action.default
        shown = default not in (None, False, [], "", argparse.SUPPRESS)
        if shown and "%(default)" not in text and "default" not in text and action.option_strings:
            text = f"{text} (default: %(default)s)".strip()
        return text


class Parser(argparse.ArgumentParser):
    """Defaults in every help text; a usage error is one line on stderr, as any other error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A command that asks for a raw epilog (sim's fault table) gets it with defaults too.
        if kwargs.get("formatter_class") in (None, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        # An option without help text still gets its default shown.
        default = kwargs.get("default")
        if kwargs.get("help") is None and default not in (None, False, [], "") and args:
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcu-gateway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, reading the installed metadata only when asked (it costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"mcu-gateway {_version()}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mcu-gateway",
        description="Firmware update translation gateway for UART-attached MCUs.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="log messages of this level and above on stderr (`run` takes its level "
        "from its configuration)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log every byte on the serial link, one frame per line (tx/rx, hex)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for name in _COMMANDS:
        module = importlib.import_module(f"gateway.cli.{name}")
        module.register(sub)
    return parser


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (tests swap it between commands)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _logging(args: argparse.Namespace) -> None:
    """--log-level for every logger, --trace for the wire; `run` configures its own."""
    if args.command == "run":
        return
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        root.addHandler(_Stderr())
    root.setLevel(getattr(logging, args.log_level.upper()))
    from protocols.trace import WIRE_LOGGER

    # Wire lines at DEBUG, whatever --log-level says of the other loggers.
    wire = logging.getLogger(WIRE_LOGGER)
    wire.setLevel(logging.DEBUG if args.trace else logging.NOTSET)
    wire.propagate = not args.trace
    if args.trace and not any(isinstance(h, _Stderr) for h in wire.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        wire.addHandler(handler)
    elif not args.trace:
        for h in [h for h in wire.handlers if isinstance(h, _Stderr)]:
            wire.removeHandler(h)


def command_name(args: argparse.Namespace) -> str:
    """The sub-command as typed: "flash", "image verify", "fleet status"."""
    nested = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {nested}" if nested else str(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _logging(args)
    name = command_name(args)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        # Errors may quote a package URL; its userinfo and query are credentials.
        message = redact_text(str(exc))
        print(f"mcu-gateway {name}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mcu-gateway {name}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

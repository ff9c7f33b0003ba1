"""`mcu-gateway run --config FILE`: the gateway service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="run the gateway service")
    p.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    p.add_argument("--log-format", choices=["text", "json"], help="override [gateway] log_format")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.errors import GatewayError
    from gateway.logs import setup_logging
    from gateway.service import Gateway

    try:
        config = load_config(args.config)
    except GatewayError as exc:
        raise CommandError(str(exc)) from exc
    setup_logging(args.log_format or config.gateway.log_format.value, config.gateway.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Gateway(config).run(stop)

    try:
        asyncio.run(main())
    except GatewayError as exc:
        raise CommandError(str(exc)) from exc
    logging.getLogger("gateway").info("stopped")
    return 0

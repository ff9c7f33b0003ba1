"""Shared plumbing for commands that talk to one MCU: open, run, translate errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.cli.common import CommandError
from protocols.errors import (
    DeviceRejected,
    DeviceTimeout,
    PortNotFound,
    ProtocolError,
    TransportDisconnected,
    UnsupportedVersionError,
    VerifyFailed,
)
from protocols.session import BootloaderSession
from protocols.transport import open_transport

T = TypeVar("T")


def describe(exc: ProtocolError, port: str) -> str:
    """One line naming the port and what went wrong."""
    if isinstance(exc, PortNotFound):
        return str(exc)
    if isinstance(exc, DeviceTimeout):
        return f"no answer from a bootloader on {port}: {exc}"
    if isinstance(exc, UnsupportedVersionError):
        return f"{port}: {exc}"
    if isinstance(exc, VerifyFailed):
        return f"{port}: verification failed: {exc}"
    if isinstance(exc, DeviceRejected):
        return f"{port}: {exc}"
    if isinstance(exc, TransportDisconnected):
        return f"{port}: link lost: {exc}"
    return f"{port}: {exc}"


def run_with_session(port: str, baud: int, body: Callable[[BootloaderSession], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = await open_transport(port, baud)
        try:
            return await body(BootloaderSession(transport, baud))
        finally:
            await transport.close()

    try:
        return asyncio.run(main())
    except ProtocolError as exc:
        raise CommandError(describe(exc, port)) from exc

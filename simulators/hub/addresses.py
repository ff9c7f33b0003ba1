"""Start the emulator on the first free loopback address of a range.

The SDK's MQTT port is fixed at 8883, so two hubs on one machine (parallel test
runs, a demo beside a benchmark) need different 127.x.y.z addresses; whoever
starts one tries the addresses in turn and skips those already taken. Only
"address in use" moves on to the next address: any other failure is raised.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from simulators.hub.errors import StartupError

T = TypeVar("T")


def in_use(exc: BaseException) -> bool:
    """Whether ``exc`` (a StartupError) says another server holds the address."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE


def _none_free(tried: list[str]) -> StartupError:
    span = f"{tried[0]}-{tried[-1]}" if tried else "none given"
    return StartupError(f"no free loopback address for the hub emulator ({span})")


def first_free(addresses: Iterable[str], start: Callable[[str], T]) -> T:
    """``start(address)`` for each address until one is not in use."""
    tried: list[str] = []
    for address in addresses:
        try:
            return start(address)
        except StartupError as exc:
            if not in_use(exc):
                raise
            tried.append(address)
    raise _none_free(tried)


async def first_free_async(addresses: Iterable[str], start: Callable[[str], Awaitable[T]]) -> T:
    """:func:`first_free` for a coroutine ``start`` (the demo's and benchmarks' labs)."""
    tried: list[str] = []
    for address in addresses:
        try:
            return await start(address)
        except StartupError as exc:
            if not in_use(exc):
                raise
            tried.append(address)
    raise _none_free(tried)

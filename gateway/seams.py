"""The two things an MCU agent talks to, as Protocols: its twin link and its MCU.

:class:`gateway.cloud.DeviceTwinLink` and the bootloader drivers of
:mod:`protocols.registry` are the real implementations; the orchestration tests
use in-memory fakes. The MCU side is the driver seam itself
(:class:`protocols.driver.Driver`), so any bootloader plugs in without touching
the orchestration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from protocols.driver import Driver

JsonObject = dict[str, Any]
# (request payload) -> (HTTP-like status, JSON response payload)
MethodHandler = Callable[[Any], Awaitable[tuple[int, Any]]]


class TwinLink(Protocol):
    """One device's twin: desired in, reported out (queued, never blocking), methods."""

    device_id: str

    @property
    def connected(self) -> bool: ...

    @property
    def desired(self) -> JsonObject: ...

    async def connect(self) -> None: ...

    async def get_twin(self) -> JsonObject: ...

    def desired_patches(self) -> AsyncIterator[JsonObject]: ...

    async def report(self, patch: JsonObject, *, urgent: bool = False) -> None:
        """Queue ``patch``; ``urgent`` skips the rate limit. Never waits for the hub."""
        ...

    def on_method(self, name: str, handler: MethodHandler) -> None: ...

    async def close(self, flush_timeout: float = 2.0) -> None: ...


#: Opens the MCU's driver (holding its port) for the duration of an ``async with``.
OpenDriver = Callable[[], AbstractAsyncContextManager[Driver]]

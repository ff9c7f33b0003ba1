"""The two things an MCU agent talks to, as Protocols: its twin link and its MCU.

:class:`gateway.cloud.DeviceTwinLink` and :class:`protocols.session.BootloaderSession`
are the real implementations; the orchestration tests use in-memory fakes. The
MCU side is deliberately small (what :mod:`gateway.agent` and
:mod:`gateway.update` call, nothing more) so a bootloader driver can take its
place without touching the orchestration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from protocols.constants import ResetMode
from protocols.packets import HelloResponse, InfoResponse
from protocols.session import FlashResult, ProgressFn

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


class McuSession(Protocol):
    """One open conversation with an MCU's bootloader (the port is held meanwhile)."""

    async def hello(self) -> HelloResponse: ...

    async def info(self) -> InfoResponse: ...

    async def connect(self) -> InfoResponse:
        """Make sure the bootloader (not the app) runs; returns its INFO."""
        ...

    async def reset(self, mode: ResetMode) -> None: ...

    async def await_boot(self) -> HelloResponse: ...

    async def flash(
        self, image: bytes, version: str, *, progress: ProgressFn, confirm_timeout: float
    ) -> FlashResult: ...


#: Opens a session (holding the MCU's port) for the duration of an ``async with``.
OpenSession = Callable[[], AbstractAsyncContextManager[McuSession]]

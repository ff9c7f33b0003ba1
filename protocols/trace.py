"""Wire tracing: every byte a transport writes or reads, as hex, on the ``mcu_gateway.wire`` logger.

``mcu-gateway --trace`` turns the logger on; the registry wraps a driver's
transport only when it is on, so an untraced link pays nothing. Frames are
shown split at the 0x00 delimiter (the framing of mcugw and of SMP's console
encoding ends there too), one line per frame and direction.
"""

from __future__ import annotations

import logging
from typing import Any

from protocols.transport import Transport, Turns, converse

WIRE_LOGGER = "mcu_gateway.wire"
_log = logging.getLogger(WIRE_LOGGER)


def enabled() -> bool:
    return _log.isEnabledFor(logging.DEBUG)


def _lines(data: bytes) -> list[str]:
    parts = data.split(b"\x00")
    out = [p.hex(" ") + " 00" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1].hex(" "))
    return [line.strip() for line in out]


class TracedTransport:
    """A :class:`Transport` that logs what passes through it and otherwise defers to ``inner``."""

    def __init__(self, inner: Transport, port: str) -> None:
        self._inner = inner
        self._port = port

    async def write(self, data: bytes) -> None:
        for line in _lines(data):
            _log.debug("%s tx %s", self._port, line)
        await self._inner.write(data)

    async def read(self) -> bytes:
        data = await self._inner.read()
        for line in _lines(data):
            _log.debug("%s rx %s", self._port, line)
        return data

    async def converse(self, turns: Turns) -> None:
        await converse(self._inner, _TracedTurns(turns, self._port))

    def __getattr__(self, name: str) -> Any:
        # set_baud, close, modem lines, ...: whatever the wrapped transport offers.
        return getattr(self._inner, name)


class _TracedTurns:
    """:class:`Turns` that log what they send and receive."""

    def __init__(self, inner: Turns, port: str) -> None:
        self._inner = inner
        self._port = port

    @property
    def deadline(self) -> float:
        return self._inner.deadline

    @property
    def done(self) -> bool:
        return self._inner.done

    def outgoing(self) -> bytes:
        data = self._inner.outgoing()
        for line in _lines(data):
            _log.debug("%s tx %s", self._port, line)
        return data

    def receive(self, data: bytes) -> None:
        for line in _lines(data):
            _log.debug("%s rx %s", self._port, line)
        self._inner.receive(data)

    def sent(self) -> None:
        self._inner.sent()


def traced(transport: Transport, port: str) -> Transport:
    """``transport`` itself, or wrapped in a tracer when the wire logger is on."""
    if not enabled():
        return transport
    wrapped: Transport = TracedTransport(transport, port)
    return wrapped

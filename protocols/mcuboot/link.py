"""The async side of SMP: requests over a :class:`~protocols.transport.Transport`.

Deadlines come from the link rate (the wire time of a request and of the
largest answer) plus the device allowances in :class:`Timing`; nothing sleeps
for a fixed time.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocols.driver import DriverOptions
from protocols.mcuboot import client as smp
from protocols.mcuboot.errors import FrameError, SmpTimeout
from protocols.mcuboot.framing import BadFrame
from protocols.transport import Transport

BITS_PER_BYTE = 10  # 8N1
#: SMP packet budget when the device does not report mcumgr params: Zephyr's default
#: UART MTU (CONFIG_MCUMGR_TRANSPORT_UART_MTU), below its 384-byte netbuf default.
DEFAULT_BUF_SIZE = 256


@dataclass(frozen=True)
class Timing:
    """Deadlines derived from the link rate plus device allowances (``[serial]`` extras)."""

    baud: int
    response_s: float = 0.5  # device turnaround for an ordinary request
    erase_s: float = 20.0  # first upload chunk: the device erases room for the image
    boot_s: float = 30.0  # reset, MCUboot swap and app start
    retries: int = 3

    def wire(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    @classmethod
    def from_options(cls, options: DriverOptions) -> Timing:
        extra = options.extra

        def num(key: str, default: float) -> float:
            value = extra.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                return default
            return float(value)

        return cls(
            baud=options.baud,
            response_s=num("response_timeout_s", cls.response_s),
            erase_s=num("erase_timeout_s", cls.erase_s),
            boot_s=num("boot_timeout_s", cls.boot_s),
            retries=int(num("retries", cls.retries)),
        )


class SmpLink:
    """Requests over a transport: one at a time with retries (:meth:`call`), or a few
    in flight for an upload (:meth:`send` / :meth:`receive`)."""

    def __init__(self, transport: Transport, timing: Timing) -> None:
        self.transport = transport
        self.timing = timing
        self.client = smp.SmpClient(first_seq=random.randrange(256))
        self.buf_size = DEFAULT_BUF_SIZE
        self.tx = 0
        self.rx = 0
        self.retransmits = 0
        self.answered = False  # anything SMP ever came back on this link
        self._events: deque[smp.Reply | BadFrame] = deque()

    def reply_budget(self) -> int:
        """Wire bytes of the largest answer the device can send (base64 + line framing)."""
        encoded = (self.buf_size * 4 + 2) // 3
        return encoded + (encoded // 120 + 1) * 3

    def limit(self, request_wire: int, extra_s: float = 0.0, answers: int = 1) -> float:
        """How long ``answers`` answers may take once ``request_wire`` bytes are out."""
        budget = self.timing.wire(request_wire + answers * self.reply_budget())
        return budget + answers * self.timing.response_s + extra_s

    async def send(self, build: Callable[[int], bytes]) -> tuple[int, int]:
        """Send one request; returns (seq, wire bytes)."""
        seq = self.client.next_seq()
        wire = self.client.send(build(seq))
        await self.transport.write(wire)
        self.tx += len(wire)
        return seq, len(wire)

    def give_up(self) -> None:
        """Forget every request in flight (their late answers are skipped) and queued events."""
        self.client.give_up()
        self._events.clear()

    async def call(
        self,
        build: Callable[[int], bytes],
        what: str,
        *,
        extra_s: float = 0.0,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """Send a request (rebuilt with a fresh seq on each retry) and return its checked body."""
        attempts = 1 + (self.timing.retries if retries is None else retries)
        damaged = 0
        for attempt in range(attempts):
            if attempt:
                self.retransmits += 1
            _, size = await self.send(build)
            try:
                reply = await self.receive(self.limit(size, extra_s))
            except SmpTimeout:
                self.give_up()
                continue
            if reply is None:
                damaged += 1
                self.give_up()
                continue
            return smp.check(reply, what)
        if damaged:
            raise FrameError(f"{what}: {damaged} of {attempts} answers arrived damaged")
        raise SmpTimeout(f"{what}: no answer after {attempts} attempts")

    async def receive(self, limit_s: float) -> smp.Reply | None:
        """The next answer, or None for a damaged frame (worth resending at once)."""
        try:
            async with asyncio.timeout(limit_s):
                while not self._events:
                    data = await self.transport.read()
                    self.rx += len(data)
                    self._events.extend(self.client.receive_data(data))
        except TimeoutError:
            raise SmpTimeout(f"no answer within {limit_s:.2f} s") from None
        event = self._events.popleft()
        if isinstance(event, BadFrame):
            return None
        self.answered = True
        return event

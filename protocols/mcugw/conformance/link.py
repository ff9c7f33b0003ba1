"""A probing link: send exact bytes or requests, collect every answer with its seq.

Unlike :mod:`protocols.mcugw.session`, nothing here retries or hides a misbehaving
peer: the conformance checks need to see exactly what came back, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from protocols.errors import TransportDisconnected
from protocols.mcugw.codec import BadFrame, Codec, PacketReceived
from protocols.mcugw.constants import Opcode
from protocols.mcugw.packets import Message, Request
from protocols.transport import Transport


@dataclass(frozen=True, slots=True)
class Answer:
    seq: int
    message: Message
    at: float  # monotonic arrival time


def opcode_of(message: object) -> Opcode | None:
    op = getattr(message, "opcode", None)
    if op is None:
        op = getattr(type(message), "OPCODE", None)
    return op if isinstance(op, Opcode) else None


class ProbeLink:
    """Owns the transport's read side while the suite runs."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.codec = Codec()
        self.bad_frames = 0
        self._answers: asyncio.Queue[Answer] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0x100
        self.closed = False

    async def __aenter__(self) -> ProbeLink:
        self._reader = asyncio.create_task(self._read_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportDisconnected):
                await self._reader

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.transport.read()
                now = time.monotonic()
                self.codec.receive_data(data)
                while (ev := self.codec.next_event()) is not None:
                    if isinstance(ev, BadFrame):
                        self.bad_frames += 1
                    elif isinstance(ev, PacketReceived):
                        self._answers.put_nowait(Answer(ev.seq, ev.message, now))
        except TransportDisconnected:
            self.closed = True

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def drain(self) -> list[Answer]:
        """Forget (and return) answers nobody waited for."""
        out = []
        while not self._answers.empty():
            out.append(self._answers.get_nowait())
        return out

    async def send_raw(self, data: bytes) -> None:
        await self.transport.write(data)

    def encode(self, request: Request, seq: int) -> bytes:
        return self.codec.encode(request, seq)

    async def send(self, request: Request, seq: int | None = None) -> int:
        seq = self.next_seq() if seq is None else seq
        await self.transport.write(self.encode(request, seq))
        return seq

    async def wait(self, seq: int, opcode: Opcode, timeout: float) -> Answer | None:  # noqa: ASYNC109
        """The first answer with this seq and opcode within ``timeout`` (others are kept)."""
        deadline = time.monotonic() + timeout
        skipped: list[Answer] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        ans = await self._answers.get()
                except TimeoutError:
                    return None
                if ans.seq == seq and opcode_of(ans.message) is opcode:
                    return ans
                skipped.append(ans)
            return None
        finally:
            for ans in skipped:
                self._answers.put_nowait(ans)

    async def request(
        self,
        request: Request,
        timeout: float,  # noqa: ASYNC109 (the deadline is the check's point)
        seq: int | None = None,
    ) -> Answer | None:
        op = opcode_of(request)
        assert op is not None
        self.drain()
        seq = await self.send(request, seq)
        return await self.wait(seq, op, timeout)

    async def collect(self, quiet: float, limit: float) -> list[Answer]:
        """Every answer until ``quiet`` seconds pass without one (at most ``limit`` in all)."""
        out: list[Answer] = []
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(quiet, left)):
                    out.append(await self._answers.get())
            except TimeoutError:
                break
        return out

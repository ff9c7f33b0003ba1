"""What every check shares: the device context, the registry and the outcomes.

A check raises :class:`Failed` with a one-line reason, or :class:`Skipped` when
the device's state or capabilities make it inapplicable. Checks run in
registration order against one device and share one :class:`Ctx`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from protocols.mcugw.conformance.link import Answer, ProbeLink
from protocols.mcugw.constants import (
    Mode,
    Opcode,
    ResetMode,
    Status,
)
from protocols.mcugw.packets import (
    DataAck,
    DataRequest,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Request,
    ResetRequest,
)
from protocols.mcugw.timing import LinkTiming, flash_time


class Failed(Exception):
    """The device broke the rule the check enforces."""


class Skipped(Exception):
    """The check does not apply to this device or its current state."""


def expect(cond: bool, why: str) -> None:
    if not cond:
        raise Failed(why)


@dataclass
class Ctx:
    link: ProbeLink
    timing: LinkTiming
    hello: HelloResponse | None = None
    info: InfoResponse | None = None
    started_in_app: bool = False
    image: bytes = b""
    slot: int | None = None
    acked: int = 0
    confirmed_before: dict[int, bytes] = field(default_factory=dict)

    @property
    def h(self) -> HelloResponse:
        if self.hello is None:
            raise Skipped("no HELLO answer")
        return self.hello

    @property
    def i(self) -> InfoResponse:
        if self.info is None:
            raise Skipped("no INFO answer")
        return self.info

    def timeout(self, req: int = 16, resp: int = 400, work: float = 0.0) -> float:
        """§11 command timeout for these payload sizes."""
        return self.timing.command_timeout(req, resp, work)

    @property
    def chunk(self) -> int:
        g = self.i.geometry
        c = min(self.h.max_data, 4096, max(self.h.window // 4, g.write_size))
        return max(g.write_size, c - c % g.write_size)

    async def ask(self, req: Request, work: float = 0.0, req_len: int = 16) -> Answer:
        ans = await self.link.request(req, self.timeout(req_len, 400, work))
        name = type(req).__name__.removesuffix("Request").upper()
        expect(
            ans is not None, f"no answer to {name} within {self.timeout(req_len, 400, work):.2f} s"
        )
        assert ans is not None
        return ans

    async def status_of(self, req: Request, work: float = 0.0) -> Status:
        ans = await self.ask(req, work)
        status = getattr(ans.message, "status", None)
        expect(isinstance(status, Status), f"answer without a status: {ans.message!r}")
        assert isinstance(status, Status)
        return status

    async def refresh(self) -> InfoResponse:
        ans = await self.ask(InfoRequest())
        expect(isinstance(ans.message, InfoResponse), f"INFO answered {ans.message!r}")
        assert isinstance(ans.message, InfoResponse)
        self.info = ans.message
        return ans.message

    async def silent(self, raw: bytes, what: str) -> None:
        """The device must not answer ``raw`` (§3.1), and must still answer a HELLO after."""
        self.link.drain()
        await self.link.send_raw(raw)
        got = await self.link.collect(quiet=self.timeout(), limit=self.timeout())
        expect(not got, f"answered {what}: {got[0].message!r}" if got else "")
        await self.hello_ok(f"after {what}")

    async def hello_ok(self, when: str) -> HelloResponse:
        ans = await self.link.request(HelloRequest(1, 1), self.timeout(2, 16))
        expect(ans is not None, f"no HELLO answer {when}")
        assert ans is not None
        expect(isinstance(ans.message, HelloResponse), f"HELLO {when} answered {ans.message!r}")
        assert isinstance(ans.message, HelloResponse)
        return ans.message

    async def data(self, offset: int, payload: bytes) -> list[DataAck]:
        """One DATA frame; every DataAck it triggers (several when held frames drain)."""
        g = self.i.geometry
        work = flash_time(g, len(payload))
        seq = await self.link.send(DataRequest(offset, payload))
        first = await self.link.wait(seq, Opcode.DATA, self.timeout(len(payload) + 4, 5, work))
        expect(first is not None, f"no DataAck for DATA({offset}, {len(payload)} bytes)")
        assert first is not None
        # Drained frames are answered after they are programmed: allow one frame's flash time.
        quiet = 0.05 + 2 * self.timing.turnaround_s + work + self.timing.frame_time(5)
        more = await self.link.collect(quiet=quiet, limit=2 * quiet + 1)
        acks = [a.message for a in [first, *more] if a.seq == seq]
        out = [a for a in acks if isinstance(a, DataAck)]
        for a in out:
            if a.status in (Status.OK, Status.BUSY):
                self.acked = max(self.acked, a.next_offset)
        return out

    async def reset(self, mode: ResetMode) -> None:
        """RESET once, then wait boot_ms: earlier answers may come from the old run (§12.1)."""
        g = self.i.geometry
        self.link.drain()
        ans = await self.link.request(ResetRequest(mode), self.timeout(1, 1))
        if ans is not None:
            status = getattr(ans.message, "status", None)
            expect(status is Status.OK, f"RESET({mode.name}) answered {ans.message!r}")
        await asyncio.sleep(g.boot_ms / 1000)

    async def enter_bootloader(self) -> None:
        """RESET(STAY) and HELLO probes, as a client does (§12.1)."""
        g = self.i.geometry
        await self.reset(ResetMode.STAY)
        deadline = time.monotonic() + 4 * (g.boot_ms / 1000 + 0.5)
        while time.monotonic() < deadline:
            ans = await self.link.request(
                HelloRequest(1, 1), g.boot_ms / 1000 + self.timeout(2, 16)
            )
            msg = None if ans is None else ans.message
            if isinstance(msg, HelloResponse) and msg.mode is Mode.BOOTLOADER:
                self.hello = msg
                await self.refresh()
                return
        raise Failed("still not in the bootloader 4 x (boot_ms + 0.5 s) after RESET(STAY)")


CheckFn = Callable[[Ctx], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Check:
    """One rule of docs/protocol.md, checked against a device.

    ``rules`` quote the requirement the check enforces, each as ``"§N.M: text"``
    (verbatim from that section, markdown emphasis left out; a test holds every
    quote to the document), so a failure says which sentence of the spec it broke
    and a check can never quietly demand more than the spec does.
    """

    id: str
    section: str
    title: str
    fn: CheckFn
    rules: tuple[str, ...]
    write: bool = False
    bootloader: bool = True  # runs after the suite has put the device in the bootloader


CHECKS: list[Check] = []


def check(
    id: str,
    section: str,
    title: str,
    *,
    rules: tuple[str, ...],
    write: bool = False,
    bootloader: bool = True,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check; it runs in registration order (add new ones where they belong)."""
    if not rules:
        raise ValueError(f"check {id!r} cites no rule of docs/protocol.md")
    if any(c.id == id for c in CHECKS):
        raise ValueError(f"check {id!r} registered twice")

    def deco(fn: CheckFn) -> CheckFn:
        CHECKS.append(Check(id, section, title, fn, rules, write, bootloader))
        return fn

    return deco

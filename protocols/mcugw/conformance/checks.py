"""The checks, each naming the docs/protocol.md section it enforces.

Checks run in order against one device and share a :class:`Ctx`. A check raises
:class:`Failed` with a one-line reason, or :class:`Skipped` when the device's
state or capabilities make it inapplicable. Checks marked ``write`` program
flash (a scratch image into the inactive slot, then a trial boot of it).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from protocols.constants import (
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.conformance import frames
from protocols.mcugw.conformance.link import Answer, ProbeLink
from protocols.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    ConfirmRequest,
    DataAck,
    DataRequest,
    ErrorResponse,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Request,
    ResetRequest,
    SetBaudRequest,
    VerifyRequest,
    VerifyResponse,
)
from protocols.timing import LinkTiming, flash_time, verify_time


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
    id: str
    section: str
    title: str
    fn: CheckFn
    write: bool = False
    bootloader: bool = True  # runs after the suite has put the device in the bootloader


CHECKS: list[Check] = []


def check(
    id: str, section: str, title: str, *, write: bool = False, bootloader: bool = True
) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        CHECKS.append(Check(id, section, title, fn, write, bootloader))
        return fn

    return deco


# ---------------------------------------------------------------- as found (app or bootloader)


@check("hello-layout", "§7.1", "HELLO answers OK with the frozen layout", bootloader=False)
async def _hello(ctx: Ctx) -> str | None:
    seq = 0x1234
    ans = await ctx.link.request(HelloRequest(1, 1), ctx.timeout(2, 16), seq=seq)
    expect(ans is not None, "no answer to HELLO(1, 1)")
    assert ans is not None
    msg = ans.message
    expect(isinstance(msg, HelloResponse), f"HELLO answered {msg!r}")
    assert isinstance(msg, HelloResponse)
    expect(msg.status is Status.OK, f"status {msg.status.name}")
    expect(msg.protocol_version == 1, f"protocol_version {msg.protocol_version}, expected 1")
    expect(msg.max_data >= 1, "max_data 0")
    expect(msg.window >= msg.max_data or msg.mode is Mode.APP, "window smaller than max_data")
    ctx.hello = msg
    ctx.started_in_app = msg.mode is Mode.APP
    return f"mode {msg.mode.name}, max_data {msg.max_data}, window {msg.window}"


@check(
    "hello-any-range", "§6", "HELLO answers OK whatever version range is asked", bootloader=False
)
async def _hello_range(ctx: Ctx) -> str | None:
    for lo, hi in ((7, 9), (0, 255), (2, 1)):
        ans = await ctx.link.request(HelloRequest(lo, hi), ctx.timeout(2, 16))
        expect(ans is not None, f"no answer to HELLO({lo}, {hi})")
        assert ans is not None
        expect(
            isinstance(ans.message, HelloResponse) and ans.message.status is Status.OK,
            f"HELLO({lo}, {hi}) answered {ans.message!r}",
        )
    return None


@check(
    "info-layout",
    "§7.2",
    "INFO: identity, geometry and slot records are consistent",
    bootloader=False,
)
async def _info(ctx: Ctx) -> str | None:
    info = await ctx.refresh()
    g = info.geometry
    expect(info.status is Status.OK, f"status {info.status.name}")
    expect(info.mode is ctx.h.mode, f"INFO mode {info.mode.name} but HELLO said {ctx.h.mode.name}")
    expect(g.sector_size > 0 and g.write_size > 0 and g.page_size > 0, "zero in the geometry")
    expect(g.sector_size % g.write_size == 0, "write_size does not divide sector_size")
    expect(g.slot_size % g.sector_size == 0, "slot_size is not a whole number of sectors")
    expect(len(info.slots) >= 1, "no slot records")
    if info.mode is Mode.BOOTLOADER:
        expect(info.running_slot == 0xFF, f"running_slot {info.running_slot} in bootloader mode")
    else:
        expect(info.running_slot < len(info.slots), f"running_slot {info.running_slot} in app mode")
        running = info.slots[info.running_slot].state
        expect(running in (SlotState.TRIAL, SlotState.CONFIRMED), f"running slot is {running.name}")
    for n, s in enumerate(info.slots):
        if s.state is SlotState.EMPTY:
            expect(
                s.size == 0 and s.sha256 == bytes(32) and not s.version, f"slot {n} EMPTY with data"
            )
        if s.state is SlotState.CONFIRMED:
            ctx.confirmed_before[n] = s.sha256
    return f"{info.model} {info.compat}, {len(info.slots)} slots"


@check(
    "app-mode-refusals",
    "§9.2",
    "the app answers bootloader commands NOT_IN_BOOTLOADER",
    bootloader=False,
)
async def _app_refusals(ctx: Ctx) -> str | None:
    if ctx.h.mode is not Mode.APP:
        raise Skipped("device is in the bootloader")
    for req in (BeginRequest(16, bytes(32), "x"), VerifyRequest(), AbortRequest()):
        st = await ctx.status_of(req)
        expect(st is Status.NOT_IN_BOOTLOADER, f"{type(req).__name__} answered {st.name}")
    ans = await ctx.ask(DataRequest(0, b"\xff" * 8), req_len=12)
    expect(
        isinstance(ans.message, DataAck) and ans.message.status is Status.NOT_IN_BOOTLOADER,
        f"DATA answered {ans.message!r}",
    )
    return None


@check(
    "reset-stay",
    "§12.1",
    "RESET(STAY) answers OK, then HELLO probes find the bootloader",
    bootloader=False,
)
async def _reset_stay(ctx: Ctx) -> str | None:
    started = time.monotonic()
    await ctx.enter_bootloader()
    return f"bootloader after {time.monotonic() - started:.2f} s"


# ---------------------------------------------------------------- framing (§3, §4, §5)


@check("crc-reject", "§3.1", "a frame with a bad CRC gets no answer")
async def _crc(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2001, b"\x01\x01", crc_ok=False)), "a bad-CRC HELLO"
    )
    return None


@check("version-reject", "§3.1", "a frame with version byte ≠ 1 gets no answer")
async def _version(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2002, b"\x01\x01", version=2)), "a version-2 frame"
    )
    return None


@check("length-reject", "§3.1", "a frame whose length field disagrees with its size gets no answer")
async def _length(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2003, b"\x01\x01", length=3)), "a bad-length frame"
    )
    return None


@check("short-reject", "§3.1", "segments shorter than 10 bytes and broken COBS get no answer")
async def _short(ctx: Ctx) -> str | None:
    await ctx.silent(b"\x03\x01\x01\x00", "a 2-byte segment")
    await ctx.silent(b"\x09\x01\x01\x00", "a COBS code pointing past the segment")
    return None


@check("resync", "§3.1", "garbage before the flush byte does not spoil the next frame")
async def _resync(ctx: Ctx) -> str | None:
    noise = bytes(random.Random(7).randrange(1, 256) for _ in range(300))
    await ctx.link.send_raw(noise + b"\x00")
    await ctx.hello_ok("after 300 bytes of noise and a flush")
    # A frame cut short by a reset, then the next frame without a flush in between:
    # only the cut frame may be lost.
    cut = frames.wire(frames.body(Opcode.HELLO, 0x2004, b"\x01\x01"))[:5]
    await ctx.link.send_raw(cut + b"\x00")
    await ctx.hello_ok("after a truncated frame")
    return None


@check("oversize", "§3.1", "an oversize segment is dropped and the next frame is answered")
async def _oversize(ctx: Ctx) -> str | None:
    await ctx.silent(b"\x55" * 9000 + b"\x00", "a 9000-byte segment")
    return None


@check("cobs-forms", "§3.1", "both COBS forms of a body ending after a 0xFF block are accepted")
async def _cobs(ctx: Ctx) -> str | None:
    b = frames.ff_block_data_body(0x0101)
    for trailing in (False, True):
        ctx.link.drain()
        await ctx.link.send_raw(frames.wire(b, trailing_code=trailing))
        ans = await ctx.link.wait(0x0101, Opcode.DATA, ctx.timeout(250, 5))
        form = "with" if trailing else "without"
        expect(ans is not None, f"no answer to a DATA frame {form} the final 0x01 code")
    return None


# ---------------------------------------------------------------- requests and responses (§6)


@check("seq-echo", "§6", "responses echo seq, including 0x7FFF, 0x8000, 0xFFFF and 0x0000")
async def _seq(ctx: Ctx) -> str | None:
    for seq in (0x7FFF, 0x8000, 0xFFFF, 0x0000):
        ans = await ctx.link.request(HelloRequest(1, 1), ctx.timeout(2, 16), seq=seq)
        expect(ans is not None, f"no answer echoing seq 0x{seq:04x}")
    return None


@check(
    "retry-same-seq",
    "§6",
    "a repeated request (same seq, after 0x00) is executed and answered again",
)
async def _retry(ctx: Ctx) -> str | None:
    raw = ctx.link.encode(InfoRequest(), 0x3003)
    ctx.link.drain()
    await ctx.link.send_raw(b"\x00" + raw)
    first = await ctx.link.wait(0x3003, Opcode.INFO, ctx.timeout())
    await ctx.link.send_raw(b"\x00" + raw)
    second = await ctx.link.wait(0x3003, Opcode.INFO, ctx.timeout())
    expect(first is not None and second is not None, "a retried INFO was not answered twice")
    assert first is not None and second is not None
    expect(first.message == second.message, "two answers to the same INFO differ")
    return None


@check("unknown-opcode", "§6", "an unknown opcode is answered UNSUPPORTED (1 byte) or not at all")
async def _unknown(ctx: Ctx) -> str | None:
    ctx.link.drain()
    await ctx.link.send_raw(frames.wire(frames.body(0x3F, 0x3004, b"")))
    got = await ctx.link.collect(quiet=ctx.timeout(), limit=ctx.timeout())
    # The codec cannot decode an unknown response opcode, so an answer shows up as a bad frame.
    if not got and ctx.link.bad_frames:
        return "answered (opcode 0xBF)"
    expect(not got, f"answered with {got[0].message!r}" if got else "")
    await ctx.hello_ok("after an unknown opcode")
    return "dropped silently"


@check(
    "short-payload", "§6", "a payload too short for its layout is answered MALFORMED or not at all"
)
async def _short_payload(ctx: Ctx) -> str | None:
    ctx.link.drain()
    await ctx.link.send_raw(frames.wire(frames.body(Opcode.SET_BAUD, 0x3005, b"\x00\xc2")))
    got = await ctx.link.collect(quiet=ctx.timeout(), limit=ctx.timeout())
    if got:
        msg = got[0].message
        expect(
            isinstance(msg, ErrorResponse) and msg.status is Status.MALFORMED,
            f"a 2-byte SET_BAUD answered {msg!r}",
        )
        return "MALFORMED"
    return "dropped silently"


# ---------------------------------------------------------------- commands in the bootloader


@check("data-no-session", "§9.3", "DATA before BEGIN is DataAck(BAD_STATE, 0)")
async def _data_no_session(ctx: Ctx) -> str | None:
    ans = await ctx.ask(DataRequest(0, b"\xff" * ctx.i.geometry.write_size), req_len=12)
    msg = ans.message
    expect(isinstance(msg, DataAck), f"answered {msg!r}")
    assert isinstance(msg, DataAck)
    expect(
        (msg.status, msg.next_offset) == (Status.BAD_STATE, 0),
        f"DataAck({msg.status.name}, {msg.next_offset})",
    )
    return None


@check(
    "begin-refusals",
    "§9.3",
    "BEGIN: flags → UNSUPPORTED, too big → TOO_LARGE, size 0 or long version → MALFORMED",
)
async def _begin_refusals(ctx: Ctx) -> str | None:
    info = ctx.i
    if any(s.state is SlotState.TRIAL for s in info.slots):
        st = await ctx.status_of(BeginRequest(16, bytes(32), "x"))
        expect(st is Status.BAD_STATE, f"BEGIN during a trial answered {st.name}")
        return "a slot is on TRIAL: BAD_STATE checked"
    sha = bytes(32)
    cases = [
        (BeginRequest(16, sha, "x", BeginFlags.COMPRESSED), Status.UNSUPPORTED),
        (BeginRequest(info.geometry.slot_size + 1, sha, "x"), Status.TOO_LARGE),
        (BeginRequest(0, sha, "x"), Status.MALFORMED),
        (BeginRequest(16, sha, "v" * 81), Status.MALFORMED),
    ]
    caps = ctx.h.capabilities
    for req, want in cases:
        if req.flags and Capability.COMPRESS in caps:
            continue
        st = await ctx.status_of(req)
        expect(
            st is want,
            f"size {req.size}, version {len(req.version)} B, flags {int(req.flags)}: "
            f"{st.name}, expected {want.name}",
        )
    after = await ctx.refresh()
    expect(after.slots == info.slots, "a refused BEGIN changed the slots")
    return None


@check("confirm-in-bootloader", "§9.4", "CONFIRM in the bootloader is NO_IMAGE")
async def _confirm_bl(ctx: Ctx) -> str | None:
    st = await ctx.status_of(ConfirmRequest())
    expect(st is Status.NO_IMAGE, f"answered {st.name}")
    return None


@check("nothing-staged", "§9.4", "VERIFY and ACTIVATE with nothing staged are NO_IMAGE")
async def _nothing_staged(ctx: Ctx) -> str | None:
    staged = {SlotState.WRITING, SlotState.COMPLETE, SlotState.TRIAL}
    if any(s.state in staged for s in ctx.i.slots):
        raise Skipped("a slot is staged; VERIFY would change it")
    for req in (VerifyRequest(), ActivateRequest()):
        st = await ctx.status_of(req)
        expect(st is Status.NO_IMAGE, f"{type(req).__name__} answered {st.name}")
    return None


@check(
    "set-baud-refusal", "§9.5", "SET_BAUD to an unsupported rate is BAD_BAUD and changes nothing"
)
async def _baud(ctx: Ctx) -> str | None:
    if Capability.SET_BAUD not in ctx.h.capabilities:
        raise Skipped("no SET_BAUD capability")
    st = await ctx.status_of(SetBaudRequest(12_345))
    expect(st is Status.BAD_BAUD, f"answered {st.name}")
    await ctx.hello_ok("after a refused SET_BAUD")
    return None


@check("set-baud-switch", "§9.5", "SET_BAUD answers OK at the old rate; HELLO works at the new one")
async def _baud_switch(ctx: Ctx) -> str | None:
    if Capability.SET_BAUD not in ctx.h.capabilities:
        raise Skipped("no SET_BAUD capability")
    # The link's own rate: a switch that cannot fail on any adapter, yet runs the whole path.
    rate = ctx.timing.baud or 115_200
    st = await ctx.status_of(SetBaudRequest(rate))
    expect(st is Status.OK, f"SET_BAUD({rate}) answered {st.name}")
    ctx.link.transport.set_baud(rate)
    await ctx.hello_ok(f"at the new rate {rate}")
    return None


@check(
    "set-baud-fallback",
    "§9.5",
    "without a valid frame at the new rate the MCU falls back after 1 s",
)
async def _baud_fallback(ctx: Ctx) -> str | None:
    if Capability.SET_BAUD not in ctx.h.capabilities:
        raise Skipped("no SET_BAUD capability")
    old = ctx.timing.baud or 115_200
    new = 230_400 if old != 230_400 else 115_200
    st = await ctx.status_of(SetBaudRequest(new))
    if st is Status.BAD_BAUD:
        raise Skipped(f"{new} baud not supported")
    expect(st is Status.OK, f"SET_BAUD({new}) answered {st.name}")
    # The client never switches: the MCU must hear nothing valid and return to the old
    # rate after 1 s (§9.5). This wait is that rule's own timer, not a guess.
    await asyncio.sleep(1.2)
    await ctx.hello_ok(f"at the old rate 1.2 s after SET_BAUD({new})")
    return None


@check("answer-time", "§11", "HELLO and INFO answers arrive within the §11 command timeout")
async def _timing(ctx: Ctx) -> str | None:
    worst = 0.0
    for req, resp in ((HelloRequest(1, 1), 16), (InfoRequest(), 400)) * 3:
        start = time.monotonic()
        ans = await ctx.link.request(req, ctx.timeout(2, resp))
        expect(
            ans is not None,
            f"{type(req).__name__} not answered within {ctx.timeout(2, resp):.2f} s",
        )
        assert ans is not None
        worst = max(worst, ans.at - start)
    return f"slowest answer {worst * 1000:.1f} ms"


# ---------------------------------------------------------------- transfers (--write)


def _scratch_image(ctx: Ctx) -> bytes:
    g = ctx.i.geometry
    size = max(3 * g.sector_size, ctx.h.window + 4 * ctx.chunk) + 3 * g.write_size + 1
    if size > g.slot_size:
        raise Skipped(f"slot of {g.slot_size} bytes too small for the scratch image ({size})")
    return random.Random(size).randbytes(size)


@check(
    "begin-fresh", "§9.3", "BEGIN of a new image opens the inactive slot at offset 0", write=True
)
async def _begin(ctx: Ctx) -> str | None:
    info = ctx.i
    if any(s.state is SlotState.TRIAL for s in info.slots):
        raise Skipped("a slot is on TRIAL; BEGIN is refused until the trial ends")
    ctx.image = _scratch_image(ctx)
    sha = hashlib.sha256(ctx.image).digest()
    ans = await ctx.ask(
        BeginRequest(len(ctx.image), sha, "0.0.0-conformance"),
        work=2 * info.geometry.erase_us / 1e6,
        req_len=60,
    )
    msg = ans.message
    expect(isinstance(msg, BeginResponse) and msg.status is Status.OK, f"BEGIN answered {msg!r}")
    assert isinstance(msg, BeginResponse)
    expect(msg.resume_offset == 0, f"resume_offset {msg.resume_offset} for a new image")
    expect(
        msg.slot not in ctx.confirmed_before or len(ctx.confirmed_before) > 1,
        f"BEGIN chose slot {msg.slot}, the only confirmed image",
    )
    ctx.slot, ctx.acked = msg.slot, 0
    after = await ctx.refresh()
    s = after.slots[msg.slot]
    expect(
        s.state is SlotState.WRITING and s.size == len(ctx.image) and s.sha256 == sha,
        f"slot {msg.slot} after BEGIN: {s.state.name} size {s.size}",
    )
    return f"slot {msg.slot}, {len(ctx.image)} bytes"


def _need_session(ctx: Ctx) -> None:
    if ctx.slot is None or not ctx.image:
        raise Skipped("no open transfer (begin-fresh did not pass)")


@check(
    "data-refusals",
    "§9.3",
    "DATA: misaligned → MISALIGNED, beyond size or empty → OUT_OF_RANGE",
    write=True,
)
async def _data_refusals(ctx: Ctx) -> str | None:
    _need_session(ctx)
    g = ctx.i.geometry
    size = len(ctx.image)
    cases: list[tuple[int, bytes, set[Status]]] = [
        (g.write_size // 2 or 1, b"\xff" * g.write_size, {Status.MISALIGNED})
    ]
    if g.write_size == 1:
        cases = []
    cases += [
        (size - size % g.write_size, b"\xff" * (2 * g.write_size), {Status.OUT_OF_RANGE}),
        (0, b"", {Status.OUT_OF_RANGE}),
    ]
    for off, data, want in cases:
        acks = await ctx.data(off, data)
        expect(
            bool(acks) and acks[0].status in want,
            f"DATA({off}, {len(data)} bytes): {acks[0].status.name if acks else 'no DataAck'}",
        )
        expect(
            acks[0].next_offset == 0,
            f"refusal carried next_offset {acks[0].next_offset}, expected 0",
        )
    return None


@check(
    "data-window",
    "§9.3",
    "in order → OK, duplicate → OK, ahead → GAP, hole filled → drained, OK before GAP",
    write=True,
)
async def _window(ctx: Ctx) -> str | None:
    _need_session(ctx)
    c, img = ctx.chunk, ctx.image
    acks = await ctx.data(0, img[:c])
    expect([(a.status, a.next_offset) for a in acks] == [(Status.OK, c)], f"first chunk: {acks}")
    acks = await ctx.data(0, img[:c])
    expect(
        bool(acks) and (acks[0].status, acks[0].next_offset) == (Status.OK, c), f"duplicate: {acks}"
    )
    if Capability.WINDOW not in ctx.h.capabilities or ctx.h.window < 3 * c:
        return "no window: stop-and-wait only"
    acks = await ctx.data(2 * c, img[2 * c : 3 * c])
    expect(
        bool(acks) and (acks[0].status, acks[0].next_offset) == (Status.GAP, c),
        f"frame ahead of a hole: {acks}",
    )
    acks = await ctx.data(c, img[c : 2 * c])
    expect(bool(acks) and acks[0].status is Status.OK, f"hole filled: {acks}")
    expect(
        max(a.next_offset for a in acks) == 3 * c,
        f"held frame not drained: {[(a.status.name, a.next_offset) for a in acks]}",
    )
    statuses = [a.status for a in acks]
    expect(Status.GAP not in statuses, f"GAP after the hole was filled: {statuses}")
    return None


@check("data-busy", "§9.3", "a frame beyond the window is dropped with BUSY(committed)", write=True)
async def _busy(ctx: Ctx) -> str | None:
    _need_session(ctx)
    c, w = ctx.chunk, ctx.h.window
    start = ctx.acked + w
    start -= start % ctx.i.geometry.write_size
    if start + c > len(ctx.image) or start + c - ctx.acked <= w:
        raise Skipped("image too short to reach past the window")
    acks = await ctx.data(start, ctx.image[start : start + c])
    expect(
        bool(acks) and acks[0].status is Status.BUSY and acks[0].next_offset == ctx.acked,
        f"DATA ending {start + c - ctx.acked} bytes past the committed offset: {acks}",
    )
    return None


@check(
    "data-bad-crc",
    "§3.1",
    "a DATA frame with a bad CRC is neither answered nor programmed",
    write=True,
)
async def _data_crc(ctx: Ctx) -> str | None:
    _need_session(ctx)
    off = ctx.acked
    c = min(ctx.chunk, len(ctx.image) - off)
    payload = off.to_bytes(4, "little") + ctx.image[off : off + c]
    ctx.link.drain()
    await ctx.link.send_raw(frames.wire(frames.body(Opcode.DATA, 0x4004, payload, crc_ok=False)))
    got = await ctx.link.collect(quiet=ctx.timeout(c + 4, 5), limit=ctx.timeout(c + 4, 5))
    expect(not got, f"a bad-CRC DATA was answered: {got[0].message!r}" if got else "")
    acks = await ctx.data(0, ctx.image[: ctx.chunk])  # a duplicate reports the committed offset
    expect(
        bool(acks) and acks[0].next_offset == off,
        f"committed offset moved to {acks[0].next_offset if acks else '?'}",
    )
    return None


async def _send_until(ctx: Ctx, end: int) -> None:
    c = ctx.chunk
    while ctx.acked < end:
        off = ctx.acked
        acks = await ctx.data(off, ctx.image[off : min(off + c, len(ctx.image))])
        expect(bool(acks) and acks[0].status is Status.OK, f"DATA({off}) answered {acks}")


@check("verify-too-early", "§9.4", "VERIFY with bytes missing is BAD_STATE", write=True)
async def _verify_early(ctx: Ctx) -> str | None:
    _need_session(ctx)
    st = await ctx.status_of(VerifyRequest(), work=verify_time(ctx.i.geometry, len(ctx.image)))
    expect(st is Status.BAD_STATE, f"answered {st.name}")
    return None


@check(
    "resume-checkpoint",
    "§9.3",
    "after a reset, BEGIN of the same image resumes from a persisted checkpoint",
    write=True,
)
async def _resume(ctx: Ctx) -> str | None:
    _need_session(ctx)
    g = ctx.i.geometry
    target = 2 * g.sector_size + ctx.chunk
    await _send_until(ctx, min(target, len(ctx.image) - 1))
    sent = ctx.acked
    await ctx.enter_bootloader()  # the session is gone; only flash remembers
    sha = hashlib.sha256(ctx.image).digest()
    ans = await ctx.ask(
        BeginRequest(len(ctx.image), sha, "0.0.0-conformance"),
        work=2 * g.erase_us / 1e6,
        req_len=60,
    )
    msg = ans.message
    expect(isinstance(msg, BeginResponse) and msg.status is Status.OK, f"BEGIN answered {msg!r}")
    assert isinstance(msg, BeginResponse)
    expect(msg.slot == ctx.slot, f"resumed into slot {msg.slot}, not {ctx.slot}")
    expect(
        msg.resume_offset > 0,
        f"resume_offset 0 after {sent} bytes were acknowledged: the checkpoint was lost",
    )
    expect(
        msg.resume_offset <= sent,
        f"resume_offset {msg.resume_offset} beyond the {sent} bytes acknowledged",
    )
    expect(
        msg.resume_offset % g.sector_size == 0,
        f"resume_offset {msg.resume_offset} not sector-aligned",
    )
    ctx.acked = msg.resume_offset
    await _send_until(ctx, len(ctx.image))
    return f"resumed at {msg.resume_offset} of {sent} acknowledged"


@check(
    "verify-ok",
    "§9.4",
    "VERIFY of a complete image answers its SHA-256, twice; BEGIN then resumes at size",
    write=True,
)
async def _verify(ctx: Ctx) -> str | None:
    _need_session(ctx)
    if ctx.acked < len(ctx.image):
        raise Skipped("transfer not complete")
    sha = hashlib.sha256(ctx.image).digest()
    work = verify_time(ctx.i.geometry, len(ctx.image))
    for attempt in ("first", "repeated"):
        ans = await ctx.ask(VerifyRequest(), work=work)
        msg = ans.message
        expect(
            isinstance(msg, VerifyResponse) and msg.status is Status.OK,
            f"{attempt} VERIFY answered {msg!r}",
        )
        assert isinstance(msg, VerifyResponse)
        expect(msg.sha256 == sha, f"{attempt} VERIFY reported another hash")
    info = await ctx.refresh()
    expect(
        info.slots[ctx.slot or 0].state is SlotState.COMPLETE,
        f"slot is {info.slots[ctx.slot or 0].state.name}",
    )
    ans = await ctx.ask(BeginRequest(len(ctx.image), sha, "0.0.0-conformance"), req_len=60)
    expect(
        isinstance(ans.message, BeginResponse) and ans.message.resume_offset == len(ctx.image),
        f"BEGIN of the verified image answered {ans.message!r}",
    )
    return None


@check(
    "activate-trial",
    "§9.4",
    "ACTIVATE → TRIAL (repeatable); BEGIN is BAD_STATE during the trial",
    write=True,
)
async def _activate(ctx: Ctx) -> str | None:
    _need_session(ctx)
    info = ctx.i
    if info.slots[ctx.slot or 0].state is not SlotState.COMPLETE:
        raise Skipped("no COMPLETE slot")
    for attempt in ("first", "repeated"):
        st = await ctx.status_of(ActivateRequest(), work=0.2)
        expect(st is Status.OK, f"{attempt} ACTIVATE answered {st.name}")
    info = await ctx.refresh()
    expect(
        info.slots[ctx.slot or 0].state is SlotState.TRIAL,
        f"slot is {info.slots[ctx.slot or 0].state.name}",
    )
    st = await ctx.status_of(BeginRequest(16, bytes(32), "x"))
    expect(st is Status.BAD_STATE, f"BEGIN during the trial answered {st.name}")
    return None


@check(
    "trial-boot",
    "§10.3",
    "RESET(RUN) boots the trial; it ends CONFIRMED or rolled back, the old image intact",
    write=True,
)
async def _trial(ctx: Ctx) -> str | None:
    _need_session(ctx)
    slot = ctx.slot or 0
    if ctx.i.slots[slot].state is not SlotState.TRIAL:
        raise Skipped("no TRIAL slot")
    g = ctx.i.geometry
    await ctx.reset(ResetMode.RUN)
    deadline = time.monotonic() + (g.boot_ms / 1000 + 0.2) * (g.max_trial_boots + 1) + 10
    info = None
    while time.monotonic() < deadline:
        ans = await ctx.link.request(InfoRequest(), g.boot_ms / 1000 + ctx.timeout())
        if ans is None or not isinstance(ans.message, InfoResponse):
            continue
        info = ans.message
        now = info.slots[slot].state
        if now is SlotState.INVALID or (now is SlotState.CONFIRMED and info.running_slot == slot):
            break
        if info.mode is Mode.BOOTLOADER and now is SlotState.TRIAL:
            await ctx.reset(ResetMode.RUN)  # the reset was lost (§12.1)
    expect(info is not None, "no INFO answer after RESET(RUN)")
    assert info is not None
    ctx.info = info
    s = info.slots[slot]
    expect(
        s.state in (SlotState.CONFIRMED, SlotState.INVALID),
        f"trial slot still {s.state.name} at the deadline",
    )
    if s.state is SlotState.INVALID:
        expect(s.boot_count >= 1, "rolled back without a recorded boot attempt")
    for n, sha in ctx.confirmed_before.items():
        if n != slot:
            expect(
                info.slots[n].sha256 == sha and info.slots[n].state is SlotState.CONFIRMED,
                f"the previously confirmed slot {n} changed during the trial",
            )
    outcome = "confirmed" if s.state is SlotState.CONFIRMED else "rolled back"
    return f"{outcome} after {s.boot_count} boot(s)"


@check(
    "verify-failed-abort",
    "§9.4",
    "a wrong hash → VERIFY_FAILED and INVALID; ABORT → OK and INVALID",
    write=True,
)
async def _verify_failed(ctx: Ctx) -> str | None:
    if ctx.h.mode is not Mode.BOOTLOADER or ctx.i.mode is not Mode.BOOTLOADER:
        await ctx.enter_bootloader()
    if any(s.state is SlotState.TRIAL for s in ctx.i.slots):
        raise Skipped("a slot is on TRIAL")
    g = ctx.i.geometry
    image = random.Random(99).randbytes(ctx.chunk + 5)
    ans = await ctx.ask(
        BeginRequest(len(image), bytes(32), "0.0.1-bad"), work=2 * g.erase_us / 1e6, req_len=60
    )
    expect(
        isinstance(ans.message, BeginResponse) and ans.message.status is Status.OK,
        f"BEGIN answered {ans.message!r}",
    )
    assert isinstance(ans.message, BeginResponse)
    slot = ans.message.slot
    ctx.image, ctx.acked, ctx.slot = image, 0, slot
    await _send_until(ctx, len(image))
    st = await ctx.status_of(VerifyRequest(), work=verify_time(g, len(image)))
    expect(st is Status.VERIFY_FAILED, f"VERIFY of a wrong hash answered {st.name}")
    info = await ctx.refresh()
    expect(
        info.slots[slot].state is SlotState.INVALID,
        f"slot after VERIFY_FAILED is {info.slots[slot].state.name}",
    )
    ans = await ctx.ask(
        BeginRequest(len(image), hashlib.sha256(image).digest(), "0.0.2"),
        work=2 * g.erase_us / 1e6,
        req_len=60,
    )
    expect(
        isinstance(ans.message, BeginResponse) and ans.message.resume_offset == 0,
        f"BEGIN answered {ans.message!r}",
    )
    for attempt in ("first", "repeated"):
        st = await ctx.status_of(AbortRequest(), work=0.1)
        expect(st is Status.OK, f"{attempt} ABORT answered {st.name}")
    info = await ctx.refresh()
    expect(
        info.slots[slot].state is SlotState.INVALID,
        f"slot after ABORT is {info.slots[slot].state.name}",
    )
    acks = await ctx.data(0, image[: ctx.chunk])
    expect(bool(acks) and acks[0].status is Status.BAD_STATE, f"DATA after ABORT answered {acks}")
    return None


@check(
    "data-off-grid",
    "§9.3",
    "a non-final DATA whose length is off the write_size grid is MISALIGNED",
    write=True,
)
async def _off_grid(ctx: Ctx) -> str | None:
    # Last on purpose: a device that programs such a frame is left mid-word (one that
    # crashes on the next write takes no other check down with it).
    g = ctx.i.geometry
    if g.write_size == 1:
        raise Skipped("write_size 1: every length is on the grid")
    if ctx.i.mode is not Mode.BOOTLOADER or any(s.state is SlotState.TRIAL for s in ctx.i.slots):
        await ctx.enter_bootloader()
    if any(s.state is SlotState.TRIAL for s in ctx.i.slots):
        raise Skipped("a slot is on TRIAL")
    image = random.Random(98).randbytes(4 * g.write_size)
    ans = await ctx.ask(
        BeginRequest(len(image), hashlib.sha256(image).digest(), "0.0.3"),
        work=2 * g.erase_us / 1e6,
        req_len=60,
    )
    expect(
        isinstance(ans.message, BeginResponse) and ans.message.status is Status.OK,
        f"BEGIN answered {ans.message!r}",
    )
    acks = await ctx.data(0, image[: g.write_size + 1])
    expect(bool(acks), "no DataAck")
    expect(
        acks[0].status is Status.MISALIGNED,
        f"DATA(0, {g.write_size + 1} bytes) of a {len(image)}-byte image: {acks[0].status.name}",
    )
    acks = await ctx.data(0, image[: 2 * g.write_size])
    expect(
        bool(acks) and (acks[0].status, acks[0].next_offset) == (Status.OK, 2 * g.write_size),
        f"then DATA(0, {2 * g.write_size}): {acks}",
    )
    st = await ctx.status_of(AbortRequest(), work=0.1)
    expect(st is Status.OK, f"ABORT answered {st.name}")
    return None

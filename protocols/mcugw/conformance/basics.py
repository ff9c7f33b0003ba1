"""Checks of the device as found and of framing and requests (§3-§7, §12.1)."""

from __future__ import annotations

import random
import time

from protocols.mcugw.conformance import frames
from protocols.mcugw.conformance.ctx import Ctx, Skipped, check, expect
from protocols.mcugw.constants import (
    Mode,
    Opcode,
    SlotState,
    Status,
)
from protocols.mcugw.packets import (
    AbortRequest,
    BeginRequest,
    DataAck,
    DataRequest,
    ErrorResponse,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    VerifyRequest,
)

# ---------------------------------------------------------------- as found (app or bootloader)


@check(
    "hello-layout",
    "§7.1",
    "HELLO answers OK with the frozen layout",
    bootloader=False,
    rules=(
        "§7.1: Response (frozen layout, never changes)",
        "§7.1: protocol_version | command-set version the MCU speaks (1)",
        "§7.1: In APP mode capabilities, max_data and window are informational: an application "
        "MAY report 0",
        "§7.4: 1 .. max_data bytes, to the end of the payload",
        "§9.3: offset + n − committed > window | dropped; DataAck(BUSY, committed)",
    ),
)
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
    if msg.mode is Mode.BOOTLOADER:
        # An application MAY report 0 for both (vector hello_response_app): only the
        # bootloader's values govern a transfer.
        expect(msg.max_data >= 1, "max_data 0 in BOOTLOADER mode")
        expect(msg.window >= msg.max_data, "window smaller than max_data in BOOTLOADER mode")
    ctx.hello = msg
    ctx.started_in_app = msg.mode is Mode.APP
    return f"mode {msg.mode.name}, max_data {msg.max_data}, window {msg.window}"


@check(
    "hello-any-range",
    "§6",
    "HELLO answers OK whatever version range is asked",
    bootloader=False,
    rules=(
        "§6: The MCU MUST answer HELLO with OK and that layout, whatever range the client sent",
    ),
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
    rules=(
        "§7.2: slot of the running application in APP mode; 0xFF in BOOTLOADER mode",
        "§7.2: program alignment; DATA offsets are multiples of it",
        '§8.3: an EMPTY slot reports 0, zeros and ""',
        "§10.3: for c in the CONFIRMED slots, highest generation first",
    ),
)
async def _info(ctx: Ctx) -> str | None:
    info = await ctx.refresh()
    g = info.geometry
    expect(info.status is Status.OK, f"status {info.status.name}")
    expect(info.mode is ctx.h.mode, f"INFO mode {info.mode.name} but HELLO said {ctx.h.mode.name}")
    expect(g.write_size > 0, "write_size 0: no offset is a multiple of it")
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
    rules=("§9.2: it answers every other command with NOT_IN_BOOTLOADER",),
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
    rules=("§9.4: RESET(STAY) answers OK, reboots and stays in the bootloader",),
)
async def _reset_stay(ctx: Ctx) -> str | None:
    started = time.monotonic()
    await ctx.enter_bootloader()
    return f"bootloader after {time.monotonic() - started:.2f} s"


# ---------------------------------------------------------------- framing (§3, §4, §5)


@check(
    "crc-reject",
    "§3.1",
    "a frame with a bad CRC gets no answer",
    rules=("§3.1: or whose CRC does not match is dropped silently. The MCU MUST NOT answer it",),
)
async def _crc(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2001, b"\x01\x01", crc_ok=False)), "a bad-CRC HELLO"
    )
    return None


@check(
    "version-reject",
    "§3.1",
    "a frame with version byte ≠ 1 gets no answer",
    rules=(
        "§3.1: whose version is not 1",
        "§3.1: The MCU MUST NOT answer it",
    ),
)
async def _version(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2002, b"\x01\x01", version=2)), "a version-2 frame"
    )
    return None


@check(
    "length-reject",
    "§3.1",
    "a frame whose length field disagrees with its size gets no answer",
    rules=(
        "§3.1: whose length disagrees with the body size",
        "§3.1: The MCU MUST NOT answer it",
    ),
)
async def _length(ctx: Ctx) -> str | None:
    await ctx.silent(
        frames.wire(frames.body(Opcode.HELLO, 0x2003, b"\x01\x01", length=3)), "a bad-length frame"
    )
    return None


@check(
    "short-reject",
    "§3.1",
    "segments shorter than 10 bytes and broken COBS get no answer",
    rules=(
        "§3.1: A segment that fails COBS decoding, is shorter than 10 bytes",
        "§3.1: The MCU MUST NOT answer it",
    ),
)
async def _short(ctx: Ctx) -> str | None:
    await ctx.silent(b"\x03\x01\x01\x00", "a 2-byte segment")
    await ctx.silent(b"\x09\x01\x01\x00", "a COBS code pointing past the segment")
    return None


@check(
    "resync",
    "§3.1",
    "garbage before the flush byte does not spoil the next frame",
    rules=(
        "§3.1: Whatever partial garbage the MCU holds (line noise, a frame cut by a reset) is "
        "terminated by it and fails as one bad segment instead of corrupting the next real frame",
    ),
)
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


@check(
    "oversize",
    "§3.1",
    "an oversize segment is dropped and the next frame is answered",
    rules=(
        "§3.1: A receiver MUST discard a segment longer than its receive buffer without "
        "buffering the rest",
        "§3.1: the frame after that delimiter is decoded normally",
    ),
)
async def _oversize(ctx: Ctx) -> str | None:
    await ctx.silent(b"\x55" * 9000 + b"\x00", "a 9000-byte segment")
    return None


@check(
    "cobs-forms",
    "§3.1",
    "both COBS forms of a body ending after a 0xFF block are accepted",
    rules=(
        "§3.1: decoders MUST accept both forms",
        "§3.1: so an MCU MAY drop a longer one unanswered",
    ),
)
async def _cobs(ctx: Ctx) -> str | None:
    if ctx.h.max_data < frames.FF_BLOCK_DATA_BYTES:
        # Longer than its largest request: the MCU MAY drop it unanswered (§3.1).
        raise Skipped(f"max_data {ctx.h.max_data} < the {frames.FF_BLOCK_DATA_BYTES}-byte DATA")
    # Two seqs: a device that ignores a repeated seq fails retry-same-seq, not this.
    for seq, trailing in ((0x0101, False), (0x0202, True)):
        b = frames.ff_block_data_body(seq)
        ctx.link.drain()
        await ctx.link.send_raw(frames.wire(b, trailing_code=trailing))
        ans = await ctx.link.wait(seq, Opcode.DATA, ctx.timeout(250, 5))
        form = "with" if trailing else "without"
        expect(ans is not None, f"no answer to a DATA frame {form} the final 0x01 code")
    return None


# ---------------------------------------------------------------- requests and responses (§6)


@check(
    "seq-echo",
    "§6",
    "responses echo seq, including 0x7FFF, 0x8000, 0xFFFF and 0x0000",
    rules=("§6: The response carries the same seq",),
)
async def _seq(ctx: Ctx) -> str | None:
    for seq in (0x7FFF, 0x8000, 0xFFFF, 0x0000):
        ans = await ctx.link.request(HelloRequest(1, 1), ctx.timeout(2, 16), seq=seq)
        expect(ans is not None, f"no answer echoing seq 0x{seq:04x}")
    return None


@check(
    "retry-same-seq",
    "§6",
    "a repeated request (same seq, after 0x00) is executed and answered again",
    rules=("§6: The MCU simply executes a repeated request again and answers it",),
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


@check(
    "unknown-opcode",
    "§6",
    "an unknown opcode is answered UNSUPPORTED (1 byte) or not at all",
    rules=(
        "§6: An MCU MAY answer a CRC-valid request with an opcode it does not implement with "
        "that opcode | 0x80 and status UNSUPPORTED",
        "§6: or it MAY drop such a frame silently",
    ),
)
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
    "short-payload",
    "§6",
    "a payload too short for its layout is answered MALFORMED or not at all",
    rules=(
        "§6: and one whose payload does not fit its layout with MALFORMED",
        "§6: or it MAY drop such a frame silently",
    ),
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

"""Checks of bootloader commands that change nothing: refusals, SET_BAUD, timing."""

from __future__ import annotations

import asyncio
import time

from protocols.mcugw.conformance.ctx import Ctx, Skipped, check, expect
from protocols.mcugw.constants import (
    BeginFlags,
    Capability,
    SlotState,
    Status,
)
from protocols.mcugw.packets import (
    ActivateRequest,
    BeginRequest,
    ConfirmRequest,
    DataAck,
    DataRequest,
    HelloRequest,
    InfoRequest,
    SetBaudRequest,
    VerifyRequest,
)

# ---------------------------------------------------------------- commands in the bootloader


@check(
    "data-no-session",
    "§9.3",
    "DATA before BEGIN is DataAck(BAD_STATE, 0)",
    rules=("§9.3: no open session | DataAck(BAD_STATE, 0)",),
)
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
    rules=(
        "§9.3: a slot is in state TRIAL (writing the other slot would destroy the only fallback) "
        "| BAD_STATE",
        "§9.3: flags ≠ 0 for a feature not advertised | UNSUPPORTED",
        "§8.5: A reserved bit (2..31) is never advertised: UNSUPPORTED",
        "§9.3: size > slot_size | TOO_LARGE",
        "§9.3: size = 0, or version longer than 80 bytes | MALFORMED",
    ),
)
async def _begin_refusals(ctx: Ctx) -> str | None:
    info = ctx.i
    if any(s.state is SlotState.TRIAL for s in info.slots):
        st = await ctx.status_of(BeginRequest(16, bytes(32), "x"))
        expect(st is Status.BAD_STATE, f"BEGIN during a trial answered {st.name}")
        return "a slot is on TRIAL: BAD_STATE checked"
    sha = bytes(32)
    reserved = BeginFlags(0x04)  # no capability: refused by every MCU, before the tail
    cases = [
        (BeginRequest(16, sha, "x", BeginFlags.COMPRESSED), Status.UNSUPPORTED),
        (BeginRequest(16, sha, "x", reserved), Status.UNSUPPORTED),
        (BeginRequest(info.geometry.slot_size + 1, sha, "x"), Status.TOO_LARGE),
        (BeginRequest(0, sha, "x"), Status.MALFORMED),
        (BeginRequest(16, sha, "v" * 81), Status.MALFORMED),
    ]
    caps = ctx.h.capabilities
    for req, want in cases:
        if req.flags and req.flags != reserved and Capability.COMPRESS in caps:
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


@check(
    "confirm-in-bootloader",
    "§9.4",
    "CONFIRM in the bootloader is NO_IMAGE",
    rules=(
        "§9.4: With no running slot (always so in the bootloader) or a running slot in another "
        "state it answers NO_IMAGE",
    ),
)
async def _confirm_bl(ctx: Ctx) -> str | None:
    st = await ctx.status_of(ConfirmRequest())
    expect(st is Status.NO_IMAGE, f"answered {st.name}")
    return None


@check(
    "nothing-staged",
    "§9.4",
    "VERIFY and ACTIVATE with nothing staged are NO_IMAGE",
    rules=(
        "§9.4: if there is none it answers NO_IMAGE",
        "§9.4: with neither a COMPLETE nor a TRIAL slot it answers NO_IMAGE",
    ),
)
async def _nothing_staged(ctx: Ctx) -> str | None:
    staged = {SlotState.WRITING, SlotState.COMPLETE, SlotState.TRIAL}
    if any(s.state in staged for s in ctx.i.slots):
        raise Skipped("a slot is staged; VERIFY would change it")
    for req in (VerifyRequest(), ActivateRequest()):
        st = await ctx.status_of(req)
        expect(st is Status.NO_IMAGE, f"{type(req).__name__} answered {st.name}")
    return None


@check(
    "set-baud-refusal",
    "§9.5",
    "SET_BAUD to an unsupported rate is BAD_BAUD and changes nothing",
    rules=("§9.5: The MCU answers BAD_BAUD if it does not support the rate, and nothing changes",),
)
async def _baud(ctx: Ctx) -> str | None:
    if Capability.SET_BAUD not in ctx.h.capabilities:
        raise Skipped("no SET_BAUD capability")
    st = await ctx.status_of(SetBaudRequest(12_345))
    if st is Status.OK:
        # The spec lists no rate an MCU must refuse: this one supports 12345 baud. We
        # never switch, so it must fall back within 1 s (§9.5); that timer, not a guess.
        await asyncio.sleep(1.2)
        await ctx.hello_ok("at the old rate 1.2 s after an accepted SET_BAUD(12345)")
        return "12345 baud supported"
    expect(st is Status.BAD_BAUD, f"answered {st.name}, expected BAD_BAUD (or OK)")
    await ctx.hello_ok("after a refused SET_BAUD")
    return None


@check(
    "set-baud-switch",
    "§9.5",
    "SET_BAUD answers OK at the old rate; HELLO works at the new one",
    rules=(
        "§9.5: Otherwise it answers OK at the old rate, waits for the answer to leave the UART, "
        "then switches",
    ),
)
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
    rules=(
        "§9.5: If the MCU receives no valid frame at the new rate within 1 s of the switch, it "
        "falls back to the old rate",
    ),
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


@check(
    "answer-time",
    "§11",
    "HELLO and INFO answers arrive within the §11 command timeout",
    rules=(
        "§11: timeout = 2 × turnaround + frame(request payload) + frame(response payload) + work "
        "+ margin",
    ),
)
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

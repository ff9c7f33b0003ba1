"""Checks that write flash (--write): a transfer, resume, VERIFY and the trial boot."""

from __future__ import annotations

import hashlib
import random
import time

from protocols.mcugw.conformance import frames
from protocols.mcugw.conformance.ctx import Ctx, Skipped, check, expect
from protocols.mcugw.constants import (
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    InfoRequest,
    InfoResponse,
    VerifyRequest,
    VerifyResponse,
)
from protocols.mcugw.timing import verify_time

# ---------------------------------------------------------------- transfers (--write)


def _scratch_image(ctx: Ctx) -> bytes:
    g = ctx.i.geometry
    size = max(3 * g.sector_size, ctx.h.window + 4 * ctx.chunk) + 3 * g.write_size + 1
    if size > g.slot_size:
        raise Skipped(f"slot of {g.slot_size} bytes too small for the scratch image ({size})")
    return random.Random(size).randbytes(size)


@check(
    "begin-fresh",
    "§9.3",
    "BEGIN of a new image opens the inactive slot at offset 0",
    write=True,
    rules=(
        "§9.3: Otherwise it erases the slot's trailer, appends a BEGIN record and answers 0",
        "§10.4: BEGIN never targets the fallback slot",
    ),
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
    # The session is open whatever else this answer gets wrong: later checks use it.
    ctx.slot, ctx.acked = msg.slot, 0
    expect(msg.resume_offset == 0, f"resume_offset {msg.resume_offset} for a new image")
    expect(
        msg.slot not in ctx.confirmed_before or len(ctx.confirmed_before) > 1,
        f"BEGIN chose slot {msg.slot}, the only confirmed image",
    )
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
    rules=(
        "§9.3: offset not a multiple of write_size | DataAck(MISALIGNED, committed)",
        "§9.3: offset + n > BEGIN size (stream_size in an encoded transfer, §17), or n = 0, "
        "or n > max_data | DataAck(OUT_OF_RANGE, committed)",
    ),
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
    rules=(
        "§9.3: offset + n ≤ expected (duplicate) | DataAck(OK, committed); nothing programmed",
        "§9.3: offset > expected (out of order) | held in the window; DataAck(GAP, expected)",
        "§9.3: A GAP is never sent before the OK answers it follows",
    ),
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


@check(
    "data-busy",
    "§9.3",
    "a frame beyond the window is dropped with BUSY(committed)",
    write=True,
    rules=("§9.3: offset + n − committed > window | dropped; DataAck(BUSY, committed)",),
)
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
    rules=("§3.1: or whose CRC does not match is dropped silently. The MCU MUST NOT answer it",),
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


@check(
    "verify-too-early",
    "§9.4",
    "VERIFY with bytes missing is BAD_STATE",
    write=True,
    rules=(
        "§9.4: In an open session with bytes still missing (expected < size, or < stream_size "
        "in an encoded transfer) and the slot not COMPLETE, it answers BAD_STATE",
    ),
)
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
    rules=(
        "§9.3: If that slot's trailer says WRITING or COMPLETE with the same size, SHA-256 and "
        "version, the MCU resumes: it answers with the persisted checkpoint",
        "§8.2: BEGIN answers with a persisted resume offset",
    ),
)
async def _resume(ctx: Ctx) -> str | None:
    _need_session(ctx)
    if Capability.RESUME not in ctx.h.capabilities:
        raise Skipped("no RESUME capability: BEGIN MAY start over")
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
    rules=(
        "§6: VERIFY of a COMPLETE slot answers OK again",
        "§9.4: Equal: appends COMPLETE (if the slot was WRITING",
    ),
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
    rules=(
        "§9.4: Once the slot is TRIAL, a repeated ACTIVATE answers OK without appending anything",
        "§9.3: a slot is in state TRIAL (writing the other slot would destroy the only fallback) "
        "| BAD_STATE",
    ),
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
    rules=(
        "§10.3: each reset appends another BOOT until max_trial_boots is reached, then the "
        "bootloader appends INVALID and boots the old slot",
        "§10.4: Neither may be overwritten because a flash was cut and re-run",
    ),
)
async def _trial(ctx: Ctx) -> str | None:
    _need_session(ctx)
    slot = ctx.slot or 0
    # Read afresh: an earlier check may have failed before it looked.
    if (await ctx.refresh()).slots[slot].state is not SlotState.TRIAL:
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
    rules=(
        "§9.4: Different: appends INVALID",
        "§9.4: closes the session and answers OK, also when there was nothing to abort",
    ),
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
    rules=(
        "§9.3: n not a multiple of write_size and offset + n ≠ size | DataAck(MISALIGNED, "
        "committed)",
    ),
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

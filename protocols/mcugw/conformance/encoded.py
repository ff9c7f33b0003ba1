"""Checks of encoded transfers (§17, --write; only for a device with COMPRESS): the encoded
BEGIN, a compressed stream decoded across block boundaries and resumed at a block end,
each decode error with the slot dropped and the running image untouched, and a
decompression bomb."""

from __future__ import annotations

import functools
import hashlib
import lzma
import random

from protocols.mcugw.conformance.ctx import Ctx, Skipped, check, expect
from protocols.mcugw.constants import BeginFlags, Capability, Mode, Opcode, SlotState, Status
from protocols.mcugw.encoding import (
    BLOCK_SIZE,
    LZMA_FILTERS,
    Block,
    Codec,
    DictSource,
    Encoding,
    compress,
    thumb_code,
)
from protocols.mcugw.packets import (
    AbortRequest,
    BeginRequest,
    BeginResponse,
    DataAck,
    DataRequest,
    VerifyRequest,
)
from protocols.mcugw.timing import flash_time, verify_time

VERSION = "0.0.4-encoded"


def _need_compress(ctx: Ctx) -> None:
    if not ctx.h.capabilities & Capability.COMPRESS:
        raise Skipped("the device does not advertise COMPRESS")


async def _bootloader(ctx: Ctx) -> None:
    if ctx.h.mode is not Mode.BOOTLOADER or ctx.i.mode is not Mode.BOOTLOADER:
        await ctx.enter_bootloader()
    if any(s.state is SlotState.TRIAL for s in ctx.i.slots):
        await ctx.enter_bootloader()
    if any(s.state is SlotState.TRIAL for s in ctx.i.slots):
        raise Skipped("a slot is on TRIAL")


def _image(ctx: Ctx, blocks: int) -> bytes:
    """Code-like bytes (they compress), ``blocks`` 4 KiB blocks and a short tail."""
    size = blocks * BLOCK_SIZE + 1000
    if size > ctx.i.geometry.slot_size:
        raise Skipped(f"slot of {ctx.i.geometry.slot_size} bytes too small for {size}")
    rng = random.Random(size)
    words = [rng.randbytes(4) for _ in range(200)]
    return b"".join(rng.choice(words) for _ in range(size // 4))


async def _begin(
    ctx: Ctx,
    image: bytes,
    stream: bytes,
    flags: BeginFlags = BeginFlags.COMPRESSED,
    base_sha256: bytes = bytes(32),
    encoding: int = Encoding.DEFLATE_BLOCKS,
) -> object:
    g = ctx.i.geometry
    req = BeginRequest(len(image), hashlib.sha256(image).digest(), VERSION, flags, encoding,
                       len(stream), hashlib.sha256(stream).digest(), base_sha256)  # fmt: skip
    return (await ctx.ask(req, work=2 * g.erase_us / 1e6, req_len=130)).message


async def _open(ctx: Ctx, image: bytes, stream: bytes) -> BeginResponse:
    msg = await _begin(ctx, image, stream)
    expect(isinstance(msg, BeginResponse) and msg.status is Status.OK, f"BEGIN answered {msg!r}")
    assert isinstance(msg, BeginResponse)
    return msg


async def _send(ctx: Ctx, stream: bytes, start: int, end: int) -> DataAck:
    """Stream bytes [start, end) in DATA frames; the last DataAck (the first not OK)."""
    g = ctx.i.geometry
    chunk = ctx.chunk
    off = start
    last = DataAck(status=Status.OK, next_offset=start)
    while off < end:
        data = stream[off : min(off + chunk, end)]
        # A frame may complete a block: allow the flash time of a whole one (§17.2).
        work = flash_time(g, 16 * BLOCK_SIZE)
        seq = await ctx.link.send(DataRequest(off, data))
        ans = await ctx.link.wait(seq, Opcode.DATA, ctx.timeout(len(data) + 4, 5, work))
        expect(ans is not None and isinstance(ans.message, DataAck),
               f"no DataAck for stream DATA({off}, {len(data)} bytes)")  # fmt: skip
        assert ans is not None and isinstance(ans.message, DataAck)
        last = ans.message
        if last.status is not Status.OK:
            return last
        off = last.next_offset
    return last


@check(
    "encoded-begin",
    "§9.3",
    "BEGIN with flags: no §17 tail → MALFORMED, a wrong base → DELTA_BASE_MISMATCH",
    write=True,
    rules=(
        "§9.3: flags ≠ 0 without the §17 tail, or an unknown encoding | MALFORMED",
        "§9.3: DELTA, and no CONFIRMED fallback image or its SHA-256 ≠ base_sha256 | "
        "DELTA_BASE_MISMATCH",
    ),
)
async def _encoded_begin(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    image = _image(ctx, 1)
    stream = compress(image, BLOCK_SIZE).stream
    msg = await _begin(ctx, image, stream, encoding=0)  # flags set, no tail on the wire
    status = getattr(msg, "status", None)
    expect(status is Status.MALFORMED, f"BEGIN(COMPRESSED) without the tail answered {msg!r}")
    if not ctx.h.capabilities & Capability.DELTA:
        return "no DELTA: base check skipped"
    flags = BeginFlags.COMPRESSED | BeginFlags.DELTA
    msg = await _begin(ctx, image, stream, flags, base_sha256=b"\x5a" * 32)
    status = getattr(msg, "status", None)
    expect(status is Status.DELTA_BASE_MISMATCH, f"BEGIN(DELTA) of a wrong base answered {msg!r}")
    return None


@check(
    "encoded-stream",
    "§17.3",
    "a compressed stream decodes across blocks and frames, resumes at a block end, verifies",
    write=True,
    rules=(
        "§17.3: A later BEGIN resumes only if the slot's BEGIN *and* STREAM records match "
        "(same image, same stream): it answers that checkpoint, which is a block boundary",
        "§17.1: DATA offsets and acknowledgements count stream bytes (0 … stream_size)",
    ),
)
async def _encoded_stream(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    image = _image(ctx, 6)
    enc = compress(image, BLOCK_SIZE)
    stream = enc.stream
    first = await _open(ctx, image, stream)
    expect(first.resume_offset == 0, f"a new stream resumed at {first.resume_offset}")
    half = enc.block_ends[3] + 7  # past a few block ends, mid-block
    last = await _send(ctx, stream, 0, half)
    expect(last.status is Status.OK, f"DATA answered {last.status.name} at {last.next_offset}")
    again = await _open(ctx, image, stream)  # the same stream: resume at a block end
    resume = again.resume_offset
    expect(resume == 0 or resume in enc.block_ends,
           f"resume offset {resume} is not a block end of the stream {enc.block_ends}")  # fmt: skip
    last = await _send(ctx, stream, resume, len(stream))
    expect(last.status is Status.OK and last.next_offset == len(stream),
           f"DATA answered {last.status.name} at {last.next_offset}")  # fmt: skip
    st = await ctx.status_of(VerifyRequest(), work=verify_time(ctx.i.geometry, len(image)))
    expect(st is Status.OK, f"VERIFY of the decoded image answered {st.name}")
    await ctx.status_of(AbortRequest(), work=0.1)
    return f"{len(stream)} stream bytes for {len(image)}, resumed at {resume}"


@check(
    "encoded-thumb",
    "§17.1",
    "LZMA_THUMB blocks decode across blocks and frames and verify; codec 3 without THUMB → "
    "DECODE_ERROR",
    write=True,
    rules=(
        "§17.1: An LZMA_THUMB block is codec 2's LZMA whose decoded bytes F (out_len of them) "
        "are the block's image bytes U after xz's ARM-Thumb branch filter",
        "§8.2: THUMB | with COMPRESS: it also decodes codec 3, LZMA_THUMB (§17.1)",
        "§17.2: invalid codec data",
    ),
)
async def _encoded_thumb(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    size = 6 * BLOCK_SIZE + 1002  # BL pairs across every page and block edge, a short tail
    if size > ctx.i.geometry.slot_size:
        raise Skipped(f"slot of {ctx.i.geometry.slot_size} bytes too small for {size}")
    image = thumb_code(random.Random(size), size)
    stream = compress(image, BLOCK_SIZE, thumb=True).stream
    if not ctx.h.capabilities & Capability.THUMB:
        await _refused(ctx, "codec 3 without THUMB", image, stream, Status.DECODE_ERROR)
        return "no THUMB: codec 3 refused"
    await _open(ctx, image, stream)
    last = await _send(ctx, stream, 0, len(stream))
    expect(last.status is Status.OK and last.next_offset == len(stream),
           f"DATA answered {last.status.name} at {last.next_offset}")  # fmt: skip
    st = await ctx.status_of(VerifyRequest(), work=verify_time(ctx.i.geometry, len(image)))
    expect(st is Status.OK, f"VERIFY of the decoded LZMA_THUMB image answered {st.name}")
    await ctx.status_of(AbortRequest(), work=0.1)
    return f"{len(stream)} stream bytes for {len(image)}"


async def _refused(ctx: Ctx, what: str, image: bytes, stream: bytes, want: Status) -> None:
    """The stream ends in ``want``; the slot is dropped, the session closed, the rest kept."""
    before = await ctx.refresh()
    msg = await _open(ctx, image, stream)
    last = await _send(ctx, stream, 0, len(stream))
    expect(last.status is want, f"{what}: DATA answered {last.status.name}, not {want.name}")
    info = await ctx.refresh()
    state = info.slots[msg.slot].state
    expect(state in (SlotState.INVALID, SlotState.EMPTY), f"{what}: slot left {state.name}")
    for i, s in enumerate(before.slots):
        if i != msg.slot:
            expect(info.slots[i] == s, f"{what}: slot {i} changed")
    acks = await _send(ctx, stream, 0, min(len(stream), ctx.chunk))
    expect(acks.status is Status.BAD_STATE, f"{what}: DATA after it answered {acks.status.name}")


@check(
    "encoded-errors",
    "§17.2",
    "a header off the grid → DECODE_ERROR, a base read in a compressed stream → PATCH_REJECTED",
    write=True,
    rules=(
        "§17.2: a header out of order, off the 4 KiB grid or beyond size, an oversized "
        "enc_len, a dictionary past the written output, a dict_source other than 0 in an LZMA "
        "or LZMA_THUMB block, invalid codec data, or a codec end mark before enc_len bytes",
        "§17.2: a BASE dictionary outside the base image, or in a non-DELTA transfer → "
        "PATCH_REJECTED",
        "§17.2: the MCU then drops the slot (INVALID, like a failed VERIFY) and closes the "
        "session, so a new BEGIN starts from 0; the running slot is only ever read",
    ),
)
async def _encoded_errors(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    image = _image(ctx, 2)
    good = compress(image, BLOCK_SIZE)
    # The second block claims to start 100 bytes into the image: off the 4 KiB grid.
    second = good.block_ends[0]
    bad = bytearray(good.stream)
    bad[second : second + 4] = (100).to_bytes(4, "little")
    await _refused(ctx, "header off the grid", image, bytes(bad), Status.DECODE_ERROR)
    # A deflate block whose dictionary is the base image, in a compressed (non-DELTA) stream.
    payload = b"\x03\x00"  # an empty final fixed-Huffman deflate block
    block = Block(0, BLOCK_SIZE, Codec.DEFLATE, DictSource.BASE, 0, 16, payload).encode()
    await _refused(ctx, "base read", image, block, Status.PATCH_REJECTED)
    return None


@check(
    "encoded-bomb",
    "§17.2",
    "a block that decodes to far more than its out_len → BLOCK_LENGTH, the device lives",
    write=True,
    rules=("§17.2: decoding byte out_len + 1 → BLOCK_LENGTH",),
)
async def _encoded_bomb(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    image = _image(ctx, 1)
    payload = _bomb()
    block = Block(0, BLOCK_SIZE, Codec.LZMA, DictSource.NONE, 0, 0, payload).encode()
    await _refused(ctx, "bomb", image, block, Status.BLOCK_LENGTH)
    await ctx.hello_ok("after a decompression bomb")
    return f"{len(payload)} encoded bytes that decode to {BOMB >> 20} MiB, under a 4 KiB header"


#: What the bomb decodes to: 4 MiB of zeros, about 600 encoded bytes.
BOMB = 4 << 20


@functools.cache
def _bomb() -> bytes:
    # Made once: compressing takes the event loop's time, which the checks' timeouts count.
    return lzma.compress(bytes(BOMB), format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


@check(
    "encoded-held-frames",
    "§9.3",
    "stream frames out of order: on the write grid held and drained, off it dropped with GAP",
    write=True,
    rules=(
        "§9.3: an MCU holds an out-of-order frame only if its offset − r and its length are "
        "multiples of write_size (or it ends at stream_size)",
        "§9.3: any other out-of-order frame is dropped and answered DataAck(GAP, expected)",
    ),
)
async def _encoded_held(ctx: Ctx) -> str | None:
    _need_compress(ctx)
    await _bootloader(ctx)
    image = _image(ctx, 2)
    stream = compress(image, BLOCK_SIZE).stream
    w = ctx.i.geometry.write_size
    step = max(w, (min(ctx.chunk, 256) // w) * w)  # on the grid: a multiple of write_size
    if 3 * step + w + 1 > len(stream):
        raise Skipped(f"a stream of {len(stream)} bytes is too short for three frames")
    await _open(ctx, image, stream)
    a, b, c = 0, step, 2 * step
    acks = await ctx.data(b, stream[b:c])  # ahead of a hole at a: held
    expect([(k.status, k.next_offset) for k in acks] == [(Status.GAP, 0)],
           f"a held frame answered {acks}")  # fmt: skip
    acks = await ctx.data(a, stream[a:b])  # the hole: both go in, the held one drained
    expect(bool(acks) and (acks[-1].status, acks[-1].next_offset) == (Status.OK, c),
           f"filling the hole answered {acks}, expected OK up to {c}")  # fmt: skip
    if w > 1:
        off = c + step + 1  # off the grid, beyond a new hole at c: dropped, not held
        acks = await ctx.data(off, stream[off : off + step])
        expect([(k.status, k.next_offset) for k in acks] == [(Status.GAP, c)],
               f"an off-grid frame answered {acks}")  # fmt: skip
        acks = await ctx.data(c, stream[c : c + step])  # the hole; nothing held to drain
        want = [(Status.OK, c + step)]
        expect([(k.status, k.next_offset) for k in acks] == want,
               f"after a dropped frame the hole answered {acks}, expected {want}")  # fmt: skip
    await ctx.status_of(AbortRequest(), work=0.1)
    return None if w > 1 else "write_size 1: every offset is on the grid"

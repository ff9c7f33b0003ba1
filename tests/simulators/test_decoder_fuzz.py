"""The MCU's block-stream decoder against damaged and hostile streams (§17.2): every
input ends in decoded pieces or a DecodeError naming a wire status, never anything else,
and never more output than the image."""

from __future__ import annotations

import lzma
import random
import zlib

import pytest

from protocols.mcugw.constants import Status
from protocols.mcugw.driver import error_code
from protocols.mcugw.encoding import (
    HEADER_SIZE,
    LZMA_FILTERS,
    Block,
    Codec,
    DecodeError,
    DictSource,
    compress,
    delta,
)
from protocols.mcugw.errors import DeviceRejected
from simulators.mcu.decoders import BlockStreamDecoder
from simulators.mcu.fuzz import fuzz_block_streams
from simulators.mcu.models import MODELS


def _code_like(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(300)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


BASE = _code_like(1, 20_000)
IMAGE = BASE[:9000] + b"changed" + BASE[9000:]


def _decode(stream: bytes, image_size: int, chunk: int) -> bytes:
    out = bytearray(image_size)
    dec = BlockStreamDecoder(
        image_size=image_size,
        stream_start=0,
        delta=True,
        read_output=lambda o, n: bytes(out[o : o + n]),
        read_base=lambda o, n: BASE[o : o + n],
        base_size=len(BASE),
        align=8,
    )
    for i in range(0, len(stream), chunk):
        for piece in dec.feed(stream[i : i + chunk]):
            assert piece.out_offset + len(piece.data) <= image_size
            out[piece.out_offset : piece.out_offset + len(piece.data)] = piece.data
    return bytes(out)


@pytest.mark.parametrize("kind", ["compressed", "delta"])
def test_valid_streams_decode_in_any_chunking(kind: str) -> None:
    enc = compress(IMAGE) if kind == "compressed" else delta(BASE, IMAGE)
    for chunk in (1, 7, 256, 4096, len(enc.stream)):
        assert _decode(enc.stream, len(IMAGE), chunk) == IMAGE


@pytest.mark.parametrize("kind", ["compressed", "delta"])
def test_damaged_streams_fail_only_with_a_wire_status(kind: str) -> None:
    enc = compress(IMAGE) if kind == "compressed" else delta(BASE, IMAGE)
    rng = random.Random(kind)
    statuses = set()
    for _ in range(300):  # bounded: a few seconds
        stream = bytearray(enc.stream)
        for _ in range(rng.randint(1, 4)):
            stream[rng.randrange(len(stream))] = rng.randrange(256)
        if rng.random() < 0.2:
            del stream[rng.randrange(len(stream)) :]
        try:
            got = _decode(bytes(stream), len(IMAGE), rng.choice((64, 1024)))
        except DecodeError as exc:
            statuses.add(Status[exc.status])
            continue
        # Decoded without complaint (a flipped literal, say): VERIFY's hash catches it.
        assert len(got) == len(IMAGE)
    assert statuses <= {Status.DECODE_ERROR, Status.BLOCK_LENGTH, Status.PATCH_REJECTED}
    assert Status.DECODE_ERROR in statuses


def test_a_decompression_bomb_stops_at_the_block_length() -> None:
    import zlib

    from protocols.mcugw.encoding import Block, Codec, DictSource

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(bytes(10_000_000)) + c.flush()  # 10 MB of zeros in ~10 KB
    block = Block(0, 4096, Codec.DEFLATE, DictSource.NONE, 0, 0, bomb[:4000])
    with pytest.raises(DecodeError) as exc:
        _decode(block.encode(), 8192, 512)
    assert exc.value.status in ("BLOCK_LENGTH", "DECODE_ERROR")


@pytest.mark.parametrize(
    "status",
    [
        Status.DECODE_ERROR,
        Status.BLOCK_LENGTH,
        Status.PATCH_REJECTED,
        Status.VERIFY_FAILED,
        Status.DELTA_BASE_MISMATCH,
    ],
)
def test_each_failure_has_its_own_twin_code(status: Status) -> None:
    assert error_code(DeviceRejected("DATA", status)) == f"MCU_{status.name}"


def _early_end_mark(codec: Codec, extra: bytes) -> tuple[bytes, int]:
    """One block whose end mark comes ``len(extra)`` bytes before its declared enc_len.

    Returns the stream and the stream offset just after the end mark, where a
    hostile host splits its DATA frames (issue 17 item 5).
    """
    data = IMAGE[:4096]
    if codec == Codec.LZMA:
        payload = lzma.compress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    else:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = c.compress(data) + c.flush()
    block = Block(0, len(data), codec, DictSource.NONE, 0, 0, payload + extra)
    return block.encode(), HEADER_SIZE + len(payload)


@pytest.mark.parametrize("codec", [Codec.LZMA, Codec.DEFLATE])
@pytest.mark.parametrize("extra", [b"\x00", b"\x5a" * 40])
def test_an_end_mark_before_the_declared_length_split_across_frames(
    codec: Codec, extra: bytes
) -> None:
    stream, end_mark = _early_end_mark(codec, extra)
    for split in (end_mark, end_mark + len(extra) // 2):
        dec = BlockStreamDecoder(
            image_size=4096, stream_start=0, delta=False,
            read_output=lambda o, n: b"", read_base=lambda o, n: b"", base_size=0, align=8,
        )  # fmt: skip
        with pytest.raises(DecodeError) as exc:
            list(dec.feed(stream[:split]))
            list(dec.feed(stream[split:]))
        assert exc.value.status == Status.DECODE_ERROR.name
        assert "end mark" in str(exc.value)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hostile_streams_split_across_data_frames_end_in_a_status(name: str) -> None:
    """Through the MCU's request path: early and late end marks, mutations, random bytes,
    each split across DATA frames (at the end mark too); every one ends in its §17.2
    status or OK, the MCU answers HELLO after each, and the factory app stays put."""
    report = fuzz_block_streams(MODELS[name], seed=17, count=300)
    assert report.streams == 300
    assert set(report.kinds) == {"early_end", "late_end", "mutated", "random", "valid"}
    for status in ("OK", "DECODE_ERROR", "BLOCK_LENGTH"):
        assert report.statuses.get(status, 0) > 5, report.statuses


def test_the_first_block_starts_at_zero_and_a_resumed_one_on_a_sector() -> None:
    """§17.1: out_offset is 0 for the first block; after a resume (§17.3) the stream
    restarts at a checkpoint, on a sector; the C decoder checks both the same way."""
    image = _code_like(3, 3 * 4096)
    later = compress(image[4096:]).stream  # one block, headed as if it began at 0
    body = later[HEADER_SIZE:]
    block = Block(4096, len(image) - 4096, Codec.LZMA, DictSource.NONE, 0, 0, body).encode()
    for stream_start, grid, fails in ((0, 4096, True), (64, 8192, True), (64, 4096, False)):
        dec = BlockStreamDecoder(
            image_size=len(image), stream_start=stream_start, delta=False,
            read_output=lambda o, n: image[o : o + n], read_base=lambda o, n: b"",
            base_size=0, align=8, resume_grid=grid,
        )  # fmt: skip
        if fails:
            with pytest.raises(DecodeError) as exc:
                list(dec.feed(block))
            assert exc.value.status == Status.DECODE_ERROR.name
        else:
            assert b"".join(p.data for p in dec.feed(block)) == image[4096:]

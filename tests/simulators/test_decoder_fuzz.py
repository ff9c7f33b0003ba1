"""The MCU's block-stream decoder against damaged and hostile streams (§17.2): every
input ends in decoded pieces or a DecodeError naming a wire status, never anything else,
and never more output than the image."""

from __future__ import annotations

import random

import pytest

from protocols.mcugw.constants import Status
from protocols.mcugw.driver import error_code
from protocols.mcugw.encoding import DecodeError, compress, delta
from protocols.mcugw.errors import DeviceRejected
from simulators.mcu.decoders import BlockStreamDecoder


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

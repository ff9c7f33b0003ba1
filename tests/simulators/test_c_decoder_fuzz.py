"""The C stream decoders against damaged and hostile block streams (§17.2), under
AddressSanitizer and UBSan (firmware/bootloader/ports/host/decfuzz.c): the streams are
simulators/mcu/fuzz.py's, split into DATA frames the same way, and every one must end in
the status the Python model's decoder gives, with the running slot never written and no
byte programmed at or past the image's size. Valid streams must also pass VERIFY."""

from __future__ import annotations

import hashlib
import random
import struct
import subprocess
from pathlib import Path

import pytest

from protocols.mcugw.constants import Status
from protocols.mcugw.encoding import BLOCK_SIZE, DecodeError, compress, delta, thumb_code
from simulators.mcu.core import _synthetic_image
from simulators.mcu.decoders import BlockStreamDecoder
from simulators.mcu.fuzz import _frames, hostile_stream
from simulators.mcu.native import CORE, DECODERS, INC, SANITIZE, SOURCE_DIR

STREAMS = 600


@pytest.fixture(scope="module")
def decfuzz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("decfuzz") / "bl-decfuzz"
    cmd = ["cc", "-std=c11", *SANITIZE, "-Wall", "-Wextra", "-Wpedantic", "-Werror", *INC]
    cmd += [*DECODERS, *CORE, "ports/common/sim_app.c", "ports/host/decfuzz.c", "-o", str(out)]
    proc = subprocess.run(cmd, cwd=SOURCE_DIR, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def _model_status(
    stream: bytes, frames: list[tuple[int, int]], image: bytes, base: bytes, is_delta: bool
) -> tuple[int, bool]:
    """How the Python model's decoder ends the same stream fed in the same frames, and
    whether it decoded the image."""
    out = bytearray(len(image))
    dec = BlockStreamDecoder(
        image_size=len(image), stream_start=0, delta=is_delta,
        read_output=lambda o, n: bytes(out[o : o + n]),
        read_base=lambda o, n: base[o : o + n], base_size=len(base), align=1,
    )  # fmt: skip
    try:
        for off, n in frames:
            for piece in dec.feed(stream[off : off + n]):
                out[piece.out_offset : piece.out_offset + len(piece.data)] = piece.data
    except DecodeError as exc:
        return int(Status[exc.status]), False
    # Decoded means every block ended: a stream cut short inside its last block may have
    # all its bytes out of the model's decoder while the C core still holds them in its
    # page buffer until the block ends (§17.2 allows both), so VERIFY may differ there.
    return 0, out == image and dec.next_out == len(image)


def _cases(seed: int, count: int) -> tuple[bytes, list[tuple[int, bool]]]:
    """The decfuzz input and, per stream, (model status, model decoded the image)."""
    rng = random.Random(seed)
    base = _synthetic_image("1.0.0")
    plain = base[: len(base) // 2] + rng.randbytes(100) + base[len(base) // 2 :]
    code = thumb_code(rng, 20 * 1024)  # LZMA_THUMB blocks: BL pairs across every page edge
    valid = [compress(plain).stream, compress(plain, BLOCK_SIZE).stream]
    thumb = [compress(code, thumb=True).stream, compress(code, BLOCK_SIZE, thumb=True).stream]
    deltas = [delta(base, plain).stream]
    blob = bytearray()
    expected = []
    for _ in range(count):
        roll = rng.random()
        is_delta, is_thumb = roll < 0.3, roll >= 0.7
        _kind, stream, splits = hostile_stream(
            rng, deltas if is_delta else thumb if is_thumb else valid
        )
        image = code if is_thumb else plain
        frames = _frames(rng, len(stream), 0, splits, 256)
        sha = hashlib.sha256(image).digest()
        blob += struct.pack("<BI", is_delta, len(image)) + sha
        blob += struct.pack("<I", len(stream)) + stream + struct.pack("<I", len(frames))
        blob += b"".join(struct.pack("<II", o, n) for o, n in frames)
        expected.append(_model_status(stream, frames, image, base, is_delta))
    return bytes(blob), expected


@pytest.mark.parametrize("seed", [1, 2, 7, 8])
def test_c_decoders_end_every_hostile_stream_as_the_model_does(decfuzz: Path, seed: int) -> None:
    blob, expected = _cases(seed, STREAMS)
    proc = subprocess.run([decfuzz], input=blob, capture_output=True, timeout=300, check=False)
    text = proc.stdout.decode()
    assert proc.returncode == 0, text[-2000:] + proc.stderr.decode()[-4000:]
    lines = text.splitlines()
    assert lines[-1] == f"ok {STREAMS}"
    got = [line.split() for line in lines[:-1]]
    mismatches = [
        (i, want, g) for i, ((want, _img), g) in enumerate(zip(expected, got, strict=True))
        if int(g[0]) != want
    ]  # fmt: skip
    assert not mismatches, mismatches[:10]
    # Every stream the model decodes to the image (the valid ones, split anywhere) passes
    # VERIFY on the C core too: its decoded slot holds the image.
    built = [g for (_s, img), g in zip(expected, got, strict=True) if img]
    assert len(built) > STREAMS // 20
    assert all(g == ["0", "0"] for g in built), built
    seen = {int(g[0]) for g in got}
    assert {0, Status.DECODE_ERROR, Status.BLOCK_LENGTH} <= seen

"""Power cuts during compressed and delta transfers (§17.3): the fallback survives every
cut, and a resume restarts at a block boundary, not at zero."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from protocols.mcugw.encoding import Encoded, compress, delta
from protocols.mcugw.packets import BeginResponse, DataAck, DataRequest
from simulators.mcu.core import _synthetic_image
from simulators.mcu.cutcheck import PowerLost, Update, begin_request, check, exhaustive, ops_after
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.models import MODELS

MODEL = MODELS["vmcu-l0"]
FACTORY = _synthetic_image("1.0.0")


def _code_like(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(400)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


def _update(image: bytes, encoded: Encoded) -> Update:
    return Update(
        image=image,
        version="2.0.0",
        old_sha256=hashlib.sha256(FACTORY).digest(),
        max_data=MODEL.max_data,
        boot_s=MODEL.boot_ms / 1000,
        encoded=encoded,
    )


def _delta_image() -> bytes:
    new = bytearray(FACTORY)
    new[3000:3010] = b"0123456789"
    return bytes(new) + _code_like(3, 2048)


@pytest.mark.parametrize("kind", ["compressed", "delta"])
def test_a_cut_at_every_flash_op_of_an_encoded_update(kind: str) -> None:
    if kind == "compressed":
        image = _code_like(2, 3 * MODEL.sector_size - 100)
        up = _update(image, compress(image))
    else:
        image = _delta_image()
        up = _update(image, delta(FACTORY, image))
    assert up.encoded is not None and len(up.encoded.stream) < len(image)

    def make() -> SimDevice:
        return SimDevice(MODEL)

    ops = ops_after(make, up, ())
    report = check(make, up, exhaustive(make, up, 1))
    assert report.sequences == ops and report.cuts == ops
    assert set(report.outcomes) == {"old", "new"}


def test_a_cut_delta_resumes_at_a_block_boundary() -> None:
    image = _delta_image()
    enc = delta(FACTORY, image)
    # Every block costs the same on the wire: make the stream longer so several
    # blocks (each a checkpoint candidate) go out before the cut.
    up = _update(image, enc)
    dev = SimDevice(MODEL)
    dev.power_on()
    from protocols.mcugw.constants import ResetMode
    from protocols.mcugw.packets import ResetRequest

    dev.request(ResetRequest(ResetMode.STAY))
    dev.wait(up.boot_s * 2)
    begin = dev.request(begin_request(up))
    assert isinstance(begin, BeginResponse) and begin.resume_offset == 0
    cut_after = enc.block_ends[-2]  # everything but the last block is in
    off = 0
    with pytest.raises(PowerLost):
        while off < len(enc.stream):
            if off >= cut_after:
                dev.arm_cut(1)
            ack = dev.request(DataRequest(off, enc.stream[off : off + MODEL.max_data]))
            assert isinstance(ack, DataAck) and ack.status.name == "OK"
            off += MODEL.max_data
    dev.power_on()
    dev.request(ResetRequest(ResetMode.STAY))
    dev.wait(up.boot_s * 2)
    again = dev.request(begin_request(up))
    assert isinstance(again, BeginResponse)
    assert again.resume_offset in enc.block_ends and again.resume_offset > 0
    # Nor does a raw transfer of the same image: its offsets are image bytes, and the
    # checkpoint counts stream bytes (§17.3; the C core agrees, bl_dec_same_stream).
    raw = dev.request(begin_request(dataclasses.replace(up, encoded=None)))
    assert isinstance(raw, BeginResponse) and raw.resume_offset == 0
    # A different stream for the same image never resumes from this one's checkpoint.
    other = dataclasses.replace(up, encoded=compress(image))
    fresh = dev.request(begin_request(other))
    assert isinstance(fresh, BeginResponse) and fresh.resume_offset == 0

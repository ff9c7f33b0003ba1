"""Hostile input at the MCU end and at the host decoder: answered, never a crash.

Bounded here (a few thousand frames per model, about a second each); the long
mode is ``python -m bench.fuzz``.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import ResetMode, Status
from protocols.mcugw.packets import (
    BeginRequest,
    DataAck,
    DataRequest,
    HelloRequest,
    HelloResponse,
    Request,
    ResetRequest,
)
from simulators.mcu.core import McuCore, RunState
from simulators.mcu.flash import Flash
from simulators.mcu.fuzz import fuzz_decoder, fuzz_mcu
from simulators.mcu.models import MODELS, McuModel
from tests.vectors.messages import load_vectors


@pytest.mark.parametrize("name", sorted(MODELS))
def test_seeded_hostile_frames_are_all_answered(name: str) -> None:
    report = fuzz_mcu(MODELS[name], seed=11, count=2500)
    assert report.frames == 2500
    assert report.answered + report.dropped == report.frames
    # The mix reached the flash path and its refusals, not just the front door.
    assert report.statuses["OK"] > 100
    for status in ("MISALIGNED", "OUT_OF_RANGE", "BAD_STATE"):
        assert report.statuses[status] > 10, report.statuses


def test_host_decoder_survives_damaged_streams() -> None:
    samples = [bytes.fromhex(v["hex"]) for v in load_vectors()]
    assert fuzz_decoder(seed=3, count=4000, samples=samples) > 100_000


class _Mcu:
    """A bootloader with a transfer open, driven one frame at a time."""

    def __init__(self, model: McuModel, size: int) -> None:
        self.core = McuCore(model, Flash(model), b"\x01", None)
        self.core.install_initial_app("1.0.0")
        self.core.power_on(0.0)
        self.codec = Codec()
        self.now = 0.0
        self.seq = 0
        self.ask(ResetRequest(ResetMode.STAY))
        self.ask(BeginRequest(size, hashlib.sha256(b"x").digest(), "2.0.0"))

    def ask(self, req: Request) -> object:
        self.seq += 1
        self.core.receive(self.now, self.codec.encode(req, self.seq))
        answer: object = None
        for _ in range(1000):
            if answer is not None and self.core.state is not RunState.BOOTING:
                return answer
            deadline = self.core.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline)
            self.core.advance(self.now)
            for _, data in self.core.take_output(self.now):
                self.codec.receive_data(data)
            while (ev := self.codec.next_event()) is not None:
                if isinstance(ev, PacketReceived) and ev.seq == self.seq:
                    answer = ev.message
        if answer is None:
            raise AssertionError(f"no answer to {req}")
        return answer


def test_short_data_then_overlapping_frame_is_refused_not_a_crash() -> None:
    """Issue 8: 6 bytes at 0 (write_size 4), then 8 at 4, used to raise FlashError."""
    model = MODELS["vmcu-l0"]
    mcu = _Mcu(model, 4096)
    first = mcu.ask(DataRequest(0, b"\x11" * (model.write_size + 2)))
    assert isinstance(first, DataAck) and first.status is Status.MISALIGNED
    second = mcu.ask(DataRequest(model.write_size, b"\x22" * 8))
    assert isinstance(second, DataAck) and second.status is Status.GAP
    hello = mcu.ask(HelloRequest(1, 1))
    assert isinstance(hello, HelloResponse)  # still running
    # Only the image's last frame may end off the write grid.
    ragged = _Mcu(model, 2 * model.write_size + 2)
    whole = ragged.ask(DataRequest(0, b"\x33" * (2 * model.write_size + 2)))
    assert isinstance(whole, DataAck) and whole.status is Status.OK


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 300)), min_size=1, max_size=25)
)
def test_any_data_sequence_is_answered(frames: list[tuple[int, int]]) -> None:
    model = MODELS["vmcu-l0"]
    mcu = _Mcu(model, 2999)
    for offset, length in frames:
        ack = mcu.ask(DataRequest(offset, bytes([offset & 0xFF]) * length))
        assert isinstance(ack, DataAck)
    assert isinstance(mcu.ask(HelloRequest(1, 1)), HelloResponse)

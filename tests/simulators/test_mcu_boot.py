"""The boot decision is total (docs/protocol.md §10.3): any trailer content gives a choice."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mcugw.constants import SlotState
from simulators.mcu.boot import decide, image_ok
from simulators.mcu.flash import Flash
from simulators.mcu.models import MODELS
from simulators.mcu.trailer import RECORD_SIZE, RecordKind, SlotTrailer, encode_record

MODEL = MODELS["vmcu-l0"]
CAPACITY = MODEL.trailer_size // RECORD_SIZE

# One trailer position: a valid record, a torn one, or garbage.
_position = st.one_of(
    st.tuples(st.sampled_from(list(RecordKind)), st.integers(0, 3), st.booleans()),
    st.just("torn"),
    st.just("garbage"),
)
_slot = st.tuples(
    st.booleans(),  # image bytes match the BEGIN hash
    st.lists(_position, max_size=CAPACITY),
)


def _write_slot(flash: Flash, index: int, good: bool, positions: list[object], seed: int) -> None:
    rng = random.Random(seed)
    trailer = SlotTrailer(flash, index)
    image = rng.randbytes(2 * MODEL.sector_size)
    for sec in range(0, len(image), MODEL.sector_size):
        flash.erase_sector(trailer.image_base + sec)
    flash.program(trailer.image_base, image)
    sha = hashlib.sha256(image if good else b"other").digest()
    for n, pos in enumerate(positions):
        addr = trailer.base + n * RECORD_SIZE
        if pos == "torn":
            record = encode_record(RecordKind.BOOT)
            flash.program(addr, record[: RECORD_SIZE // 2])
        elif pos == "garbage":
            flash.program(addr, rng.randbytes(RECORD_SIZE))
        else:
            assert isinstance(pos, tuple)
            kind, arg, real_size = pos
            size = len(image) if real_size else arg + 1
            if kind is RecordKind.BEGIN:
                record = encode_record(kind, size, sha, "v")
            else:
                record = encode_record(kind, arg)
            flash.program(addr, record)


@settings(max_examples=300, deadline=None)
@given(slots=st.tuples(_slot, _slot), seed=st.integers(0, 2**16))
def test_any_trailer_content_gives_a_valid_choice(
    slots: tuple[tuple[bool, list[object]], tuple[bool, list[object]]], seed: int
) -> None:
    flash = Flash(MODEL)
    for i, (good, positions) in enumerate(slots):
        _write_slot(flash, i, good, positions, seed + i)
    trailers = [SlotTrailer(flash, 0), SlotTrailer(flash, 1)]
    # Power on again and again with no app ever confirming: it must always choose
    # something valid, and the trial must end within the trailer's capacity.
    for _ in range(CAPACITY + 2):
        choice = decide(trailers)
        statuses = [t.status() for t in trailers]
        if choice.slot is None:
            assert not any(
                s.state is SlotState.CONFIRMED and image_ok(t, s)
                for t, s in zip(trailers, statuses, strict=True)
            )
            assert not choice.trial
        else:
            st_ = statuses[choice.slot]
            assert image_ok(trailers[choice.slot], st_)
            expected = SlotState.TRIAL if choice.trial else SlotState.CONFIRMED
            assert st_.state is expected
    assert not choice.trial


def test_a_torn_boot_counts_and_a_full_trial_trailer_is_invalid() -> None:
    flash = Flash(MODEL)
    _write_slot(flash, 1, True, [(RecordKind.BEGIN, 0, True), (RecordKind.COMPLETE, 0, True),
                                 (RecordKind.TRIAL, 2, True), "torn"], 1)  # fmt: skip
    trailer = SlotTrailer(flash, 1)
    assert trailer.status().state is SlotState.TRIAL
    assert trailer.status().boots == 1  # the torn BOOT was an attempt
    for n in range(4, CAPACITY):
        flash.program(trailer.base + n * RECORD_SIZE, b"\x00" * RECORD_SIZE)
    st_ = trailer.status()
    assert st_.free == 0 and st_.state is SlotState.INVALID  # full: a failed trial

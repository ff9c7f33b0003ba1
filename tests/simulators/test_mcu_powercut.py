"""Power-cut safety as a checked property (docs/protocol.md §10.5): cut at every flash op.

The long modes (depth 3 and 4 exhaustive, more models) are in bench/powercut.py.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from protocols.mcugw.constants import SlotState
from simulators.mcu import core as core_module
from simulators.mcu.core import McuCore, _synthetic_image
from simulators.mcu.cutcheck import (
    InvariantBroken,
    PowerLost,
    Update,
    check,
    exhaustive,
    flash_update,
    ops_after,
    repeated,
    run_sequence,
    sampled,
)
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.models import MODELS, McuModel


def _update(model: McuModel, size: int) -> Update:
    return Update(
        image=random.Random(5).randbytes(size),
        version="2.0.0",
        old_sha256=hashlib.sha256(_synthetic_image("1.0.0")).digest(),
        max_data=model.max_data,
        boot_s=model.boot_ms / 1000,
    )


def _small(model: McuModel) -> Update:
    # Three sectors, ragged end: two CHECKPOINTs and a short last frame.
    return _update(model, 3 * model.sector_size - 100)


@pytest.mark.parametrize("name", ["vmcu-l0", "vmcu-f4"])
def test_a_cut_at_every_flash_op_of_a_full_update(name: str) -> None:
    model = MODELS[name]
    up = _small(model)

    def make() -> SimDevice:
        return SimDevice(model)

    ops = ops_after(make, up, ())
    # BEGIN (trailer erase + record), sector erases, programs, CHECKPOINTs,
    # COMPLETE, TRIAL, the trial BOOT and the CONFIRMED.
    assert ops >= 3 + 3 + 3 + 2 + 4
    report = check(make, up, exhaustive(make, up, 1))
    assert report.sequences == ops
    assert report.cuts == ops  # every one of them fired
    assert set(report.outcomes) == {"old", "new"}  # early cuts keep the old, late the new


def test_every_pair_of_cuts_and_triples_at_same_and_random_points() -> None:
    model = MODELS["vmcu-l0"]
    up = _small(model)

    def make() -> SimDevice:
        return SimDevice(model)

    pairs = check(make, up, exhaustive(make, up, 2))
    assert pairs.sequences > 500
    assert pairs.cuts >= pairs.sequences * 2 - 40  # a second cut past its run's end is rare
    same = check(make, up, repeated(make, up, 3))
    assert same.cuts > 2 * same.sequences
    mixed = check(make, up, sampled(make, up, 3, count=120, seed=8))
    assert mixed.sequences == 120
    assert set(mixed.outcomes) == {"old", "new"}


def test_the_check_catches_a_bootloader_that_overwrites_its_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A BEGIN that targets the confirmed slot must be caught by the first few cuts."""
    model = MODELS["vmcu-l0"]
    up = _small(model)
    monkeypatch.setattr(core_module, "fallback_slot", lambda trailers, statuses, hashed=None: 1)

    def make() -> SimDevice:
        return SimDevice(model)

    with pytest.raises(InvariantBroken, match=r"old image was overwritten|neither the old nor"):
        check(make, up, exhaustive(make, up, 1))
    # A cut in the middle of the transfer leaves nothing valid to boot at all.
    with pytest.raises(InvariantBroken, match="neither the old nor the new"):
        run_sequence(make, up, (ops_after(make, up, ()) // 2,))


# ---------------------------------------------------------------- the two bricks of issue 8


def _staged_and_activated(model: McuModel, up: Update) -> SimDevice:
    """New image activated, then power lost before the reset: a trial is pending."""
    dev = SimDevice(model)
    dev.power_on()

    def at_trial_boot(core: McuCore, kind: str, addr: int) -> bool:
        return core.phase == "boot"

    dev.arm_cut_when(at_trial_boot)
    with pytest.raises(PowerLost):
        flash_update(dev, up)  # cut at the BOOT append of the trial boot
    return dev


def test_eight_power_ons_each_cut_at_the_trial_boot_boot_the_old_image() -> None:
    model = MODELS["vmcu-f4"]
    up = _update(model, 256 * 1024)
    dev = _staged_and_activated(model, up)
    for _ in range(8):  # --fault cut-phase=boot:1 on every power-on
        dev.arm_cut_when(lambda core, kind, addr: core.phase == "boot")
        try:
            dev.power_on()
        except PowerLost:
            continue
        break  # a power-on with nothing to append: the trial is over
    dev.arm_cut_when(None)
    dev.power_on()
    assert dev.running_image() == up.old_sha256
    slot = 1
    st = dev.core.trailers[slot].status()
    assert st.state is SlotState.INVALID
    assert st.boots >= model.max_trial_boots  # every torn BOOT counted as an attempt
    assert flash_update(dev, up) == "confirmed"
    assert dev.running_image() == up.sha256


def test_seven_flashes_cut_at_the_first_checkpoint_then_a_clean_one() -> None:
    model = MODELS["vmcu-f4"]
    up = _update(model, 256 * 1024)
    dev = SimDevice(model)
    dev.power_on()
    checkpoints = dev.core.trailers[1].base

    def at_checkpoint(core: McuCore, kind: str, addr: int) -> bool:
        return core.phase == "data" and kind == "program" and addr >= checkpoints

    for _ in range(7):
        dev.arm_cut_when(at_checkpoint)
        with pytest.raises(PowerLost):
            flash_update(dev, up)
        dev.arm_cut_when(None)
        dev.power_on()
        assert dev.running_image() == up.old_sha256
    assert flash_update(dev, up) == "confirmed"
    for _ in range(3):  # and it keeps booting it
        dev.power_on()
        assert dev.running_image() == up.sha256


def test_cut_sequence_reports_the_failing_sequence() -> None:
    """The error names the cuts, so a failure found by the bench can be replayed."""
    model = MODELS["vmcu-l0"]
    up = _small(model)

    # Corrupt the old image behind the trailer's back: nothing valid is left to boot.
    def broken() -> SimDevice:
        dev = SimDevice(model)
        base = dev.core.trailers[0].image_base
        dev.flash._mem[base] ^= 0xFF
        return dev

    with pytest.raises(InvariantBroken, match=r"after cuts \(1,\)"):
        run_sequence(broken, up, (1,))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_the_trailer_budget_of_section_10_1(name: str) -> None:
    model = MODELS[name]
    records = model.trailer_size // 128
    assert records >= model.max_trial_boots + 7

"""The bootloader's boot decision over the two slot trailers (pure apart from appends)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.constants import SlotState
from simulators.mcu.trailer import RecordKind, SlotStatus, SlotTrailer


@dataclass(frozen=True, slots=True)
class BootChoice:
    slot: int | None  # None: nothing bootable, stay in the bootloader
    trial: bool  # booting a not-yet-confirmed image
    rolled_back_from: int | None = None


def primary_slot(statuses: list[SlotStatus]) -> int | None:
    """The newest confirmed image: what boots when no trial is pending."""
    best: int | None = None
    for i, st in enumerate(statuses):
        if st.state is SlotState.CONFIRMED and (
            best is None or st.generation > statuses[best].generation
        ):
            best = i
    return best


def decide(trailers: list[SlotTrailer]) -> BootChoice:
    """Pick the slot to boot, appending BOOT or INVALID records as the model requires.

    Every change is one record append, so a power cut at any point leaves either
    the old or the new record state, both of which boot something valid.
    """
    statuses = [t.status() for t in trailers]
    for i, st in enumerate(statuses):
        if st.state is not SlotState.TRIAL:
            continue
        limit = trailers[i].flash.model.max_trial_boots
        if st.boots < limit:
            trailers[i].append(RecordKind.BOOT)
            return BootChoice(slot=i, trial=True)
        trailers[i].append(RecordKind.INVALID)
        statuses[i] = trailers[i].status()
        return BootChoice(slot=primary_slot(statuses), trial=False, rolled_back_from=i)
    return BootChoice(slot=primary_slot(statuses), trial=False)

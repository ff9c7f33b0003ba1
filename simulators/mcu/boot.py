"""The bootloader's boot decision over the two slot trailers (pure apart from appends).

The decision is total: whatever the trailers and images hold (torn or full
logs, records in an impossible order, an image that no longer matches its
hash), it returns a choice and never raises. A power cut (the simulator's
:class:`~simulators.mcu.flash.PowerCut`) is not a failure of the decision but
the end of the run, so it is the one exception that passes through.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocols.mcugw.constants import SlotState
from simulators.mcu.trailer import RecordKind, SlotStatus, SlotTrailer


@dataclass(frozen=True, slots=True)
class BootChoice:
    slot: int | None  # None: nothing bootable, stay in the bootloader
    trial: bool  # booting a not-yet-confirmed image
    rolled_back_from: int | None = None


def primary_slot(statuses: list[SlotStatus]) -> int | None:
    """The newest confirmed image by its trailer alone: the slot BEGIN never targets."""
    best: int | None = None
    for i, st in enumerate(statuses):
        if st.state is SlotState.CONFIRMED and (
            best is None or st.generation > statuses[best].generation
        ):
            best = i
    return best


def image_ok(trailer: SlotTrailer, st: SlotStatus) -> bool:
    """The slot's image bytes hash to what its BEGIN record promised."""
    if not 0 < st.size <= trailer.flash.model.slot_size:
        return False
    data = trailer.flash.read(trailer.image_base, st.size)
    return hashlib.sha256(data).digest() == st.sha256


def _mark_invalid(trailer: SlotTrailer, st: SlotStatus) -> None:
    # With no free position the fold already reads a full TRIAL trailer as INVALID.
    if st.free > 0:
        trailer.append(RecordKind.INVALID)


def decide(trailers: list[SlotTrailer]) -> BootChoice:
    """Pick the slot to boot, appending BOOT or INVALID records as the model requires.

    Every change is one record append, so a power cut at any point leaves either
    the old or the new record state, both of which boot something valid.
    """
    statuses = [t.status() for t in trailers]
    trials = [i for i, st in enumerate(statuses) if st.state is SlotState.TRIAL]
    rolled_back: int | None = None
    if trials:
        # At most one exists in any state our commands produce; if a damaged log
        # shows two, the newest generation goes first and the other waits.
        i = max(trials, key=lambda j: statuses[j].generation)
        st = statuses[i]
        limit = trailers[i].flash.model.max_trial_boots
        if st.boots < limit and st.free > 0 and image_ok(trailers[i], st):
            trailers[i].append(RecordKind.BOOT)
            return BootChoice(slot=i, trial=True)
        _mark_invalid(trailers[i], st)
        statuses[i] = trailers[i].status()
        rolled_back = i
    # A confirmed image is never written to, so a bad hash is a flash fault:
    # skip it rather than mark it, and fall back to the older one.
    for i in _confirmed_newest_first(statuses):
        if image_ok(trailers[i], statuses[i]):
            return BootChoice(slot=i, trial=False, rolled_back_from=rolled_back)
    return BootChoice(slot=None, trial=False, rolled_back_from=rolled_back)


def _confirmed_newest_first(statuses: list[SlotStatus]) -> list[int]:
    confirmed = [i for i, st in enumerate(statuses) if st.state is SlotState.CONFIRMED]
    return sorted(confirmed, key=lambda j: statuses[j].generation, reverse=True)


def fallback_slot(
    trailers: list[SlotTrailer], statuses: list[SlotStatus], hashed: list[int] | None = None
) -> int | None:
    """The slot a cold boot would fall back to: the newest hash-valid confirmed image.

    BEGIN writes the other slot, so an update never erases the image the MCU
    would boot if the update were cut. Falls back to the trailers' own choice
    when no confirmed image verifies (there is nothing left to protect). The
    size of each image hashed on the way is appended to ``hashed`` (its time).
    """
    for i in _confirmed_newest_first(statuses):
        if hashed is not None:
            hashed.append(statuses[i].size)
        if image_ok(trailers[i], statuses[i]):
            return i
    return primary_slot(statuses)

"""What a flash must do, decided from INFO alone (sans-I/O; docs/protocol.md §10.4).

After a power cut the image being flashed may already sit in a slot: activated
and waiting for its trial, or even confirmed. Writing it again would put it in
the *other* slot, the one holding the previous confirmed image, which is the
MCU's only fallback while the new image is unconfirmed and its only way back
afterwards. So the client finishes what the cut interrupted instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocols.mcugw.constants import SlotState
from protocols.mcugw.packets import InfoResponse


class FlashStep(enum.Enum):
    WRITE = "write"  # BEGIN (which resumes a staged copy), DATA, VERIFY, ACTIVATE, reset
    FINISH_TRIAL = "finish_trial"  # activated already: reset into its trial, write nothing
    INSTALLED = "installed"  # confirmed and the image that boots: write nothing


@dataclass(frozen=True, slots=True)
class FlashPlan:
    step: FlashStep
    slot: int | None  # the slot holding the image, for FINISH_TRIAL and INSTALLED


def plan_flash(
    info: InfoResponse,
    size: int,
    sha256: bytes,
    booted_slot: int | None = None,
    version: str | None = None,
) -> FlashPlan:
    """Choose the step for flashing the image (``size``, ``sha256``, ``version``).

    ``booted_slot`` is the slot the app ran from before the client reset the MCU
    into its bootloader (INFO in bootloader mode names no running slot). A slot
    with the same bytes under another version is not this install: the MCU would
    go on reporting the old version (issue 23.1), so the image is written again,
    into the other slot, under the new one. ``version=None`` matches any.
    """
    running = info.running_slot if info.running_slot < len(info.slots) else booted_slot
    states = [s.state for s in info.slots]
    confirmed = [i for i, st in enumerate(states) if st is SlotState.CONFIRMED]
    for i, s in enumerate(info.slots):
        if s.size != size or s.sha256 != sha256:
            continue
        if version is not None and s.version != version:
            continue
        if s.state is SlotState.TRIAL:
            return FlashPlan(FlashStep.FINISH_TRIAL, i)
        # Installed only if it is the image that boots; a matching older confirmed
        # copy in the other slot is simply overwritten by a normal update.
        boots = running == i if running is not None else confirmed == [i]
        if s.state is SlotState.CONFIRMED and boots and SlotState.TRIAL not in states:
            return FlashPlan(FlashStep.INSTALLED, i)
    return FlashPlan(FlashStep.WRITE, None)

"""The fault injector does what its spec says: cold-start cuts and data:K across frames."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from protocols.mcugw.constants import SlotState
from simulators.mcu import launch
from simulators.mcu.core import McuCore, _synthetic_image
from simulators.mcu.cutcheck import PowerLost, Update, flash_update
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.device import DeviceSpec, open_device
from simulators.mcu.models import MODELS
from simulators.mcu.options import SimOptions, parse_faults
from simulators.mcu.pty import POWER_CUT_EXIT
from simulators.mcu.trailer import RecordKind


def _update(size: int) -> Update:
    model = MODELS["vmcu-l0"]
    return Update(
        image=random.Random(1).randbytes(size),
        version="2.0.0",
        old_sha256=b"",
        max_data=model.max_data,
        boot_s=model.boot_ms / 1000,
    )


@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_cut_phase_data_k_counts_across_frames(k: int) -> None:
    model = MODELS["vmcu-l0"]
    dev = SimDevice(model, parse_faults([f"cut-phase=data:{k}"]))
    dev.power_on()
    up = _update(4 * model.sector_size)
    with pytest.raises(PowerLost, match=f"op {k} of phase data"):
        flash_update(dev, up)
    # One erase per sector and one program per 256-byte frame: K ops in, the
    # cut lands in frame K - 1 (the first op of the phase is the sector erase).
    dev.arm_cut(None)
    dev.power_on()
    st = dev.core.trailers[1].status()
    assert st.state is SlotState.WRITING
    programmed = dev.flash.read(dev.core.trailers[1].image_base, up.max_data * k)
    frames_written = sum(
        1
        for i in range(k)
        if programmed[i * up.max_data : (i + 1) * up.max_data] == up.image[i * 256 : (i + 1) * 256]
    )
    assert frames_written == max(0, k - 2)  # frame k-1 was torn mid-program


def _trial_pending(state: Path) -> None:
    """A state dir whose slot 1 is activated and waiting for its trial boot."""
    core = open_device(DeviceSpec(state_dir=state, model="vmcu-l0"), SimOptions(), 0)
    trailer = core.trailers[1]
    image = b"\x5a" * core.model.sector_size
    core.flash.erase_sector(trailer.image_base)
    core.flash.program(trailer.image_base, image)
    trailer.append(RecordKind.BEGIN, len(image), hashlib.sha256(image).digest(), "2.0.0")
    trailer.append(RecordKind.COMPLETE)
    trailer.append(RecordKind.TRIAL, 2)  # a trial pending: the cold start appends BOOT
    core.flash.close()


SERVING = -1  # the simulator came up and announced its pty


def _sim(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Start the simulator; its exit status, or SERVING once it announces a pty."""
    args = ["--state", str(state), "--baud", "0", *extra]
    try:
        with launch.running(args, timeout=30):
            return subprocess.CompletedProcess(args, SERVING, "PTY", "")
    except launch.SimStartError as exc:
        return subprocess.CompletedProcess(args, exc.returncode, "", exc.stderr)


def test_cut_at_cold_start_exits_3_without_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "mcu"
    _trial_pending(state)
    proc = _sim(state, "--fault", "cut-phase=boot:1")
    assert proc.returncode == POWER_CUT_EXIT, proc.stderr
    assert "power cut" in proc.stderr and "power-on" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "PTY" not in proc.stdout  # never announced a port it could not serve


def _old_image_boots(state: Path) -> None:
    core = open_device(DeviceSpec(state_dir=state, model="vmcu-l0"), SimOptions(), 0)
    try:
        assert core.running_slot == 0
        assert core.trailers[0].status().version == "1.0.0"
        assert core.trailers[1].status().state is SlotState.INVALID
    finally:
        core.flash.close()


def test_eight_power_ons_cut_at_the_trial_boot_then_the_old_image_boots(tmp_path: Path) -> None:
    """Issue 8's first brick, through the real simulator process."""
    state = tmp_path / "mcu"
    _trial_pending(state)
    exits = [_sim(state, "--fault", "cut-phase=boot:1").returncode for _ in range(8)]
    assert exits == [POWER_CUT_EXIT] * 8  # each one tore a trailer record
    _old_image_boots(state)


def test_even_cutting_every_power_on_ends_within_the_trailer() -> None:
    """Cut at the first write of every power-on: the full-trailer rule ends it (§10.1)."""
    model = MODELS["vmcu-l0"]
    dev = SimDevice(model)
    dev.power_on()
    up = _update(model.sector_size)

    def at_boot(core: McuCore, kind: str, addr: int) -> bool:
        return core.phase == "boot"

    dev.arm_cut_when(at_boot)
    with pytest.raises(PowerLost):
        flash_update(dev, up)  # activated; the trial boot's BOOT append is cut
    capacity = model.trailer_size // 128
    cuts = 1
    for _ in range(capacity):
        dev.arm_cut_when(at_boot)
        try:
            dev.power_on()
        except PowerLost:
            cuts += 1
            continue
        break
    # A one-sector image has no CHECKPOINT: BEGIN, COMPLETE and TRIAL hold three
    # positions, each cut power-on tore one more, and with none left the trial
    # folds to INVALID and the power-on writes nothing.
    assert cuts == capacity - 3
    assert dev.core.trailers[1].status().state is SlotState.INVALID
    assert dev.running_image() == hashlib.sha256(_synthetic_image("1.0.0")).digest()
    assert dev.core.running_slot == 0

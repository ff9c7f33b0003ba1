"""The fault injector does what its spec says: cold-start cuts and data:K across frames."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.constants import SlotState
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


def test_cut_at_cold_start_exits_3_without_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "mcu"
    core = open_device(DeviceSpec(state_dir=state, model="vmcu-l0"), SimOptions(), 0)
    trailer = core.trailers[1]
    image = b"\x5a" * core.model.sector_size
    core.flash.erase_sector(trailer.image_base)
    core.flash.program(trailer.image_base, image)
    trailer.append(RecordKind.BEGIN, len(image), hashlib.sha256(image).digest(), "2.0.0")
    trailer.append(RecordKind.COMPLETE)
    trailer.append(RecordKind.TRIAL, 2)  # a trial pending: the cold start appends BOOT
    core.flash.close()
    cmd = [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--state", str(state),
           "--baud", "0", "--fault", "cut-phase=boot:1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == POWER_CUT_EXIT, proc.stderr
    assert "power cut" in proc.stderr and "power-on" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "PTY" not in proc.stdout  # never announced a port it could not serve

"""A power-cut campaign over the pty, the same for the Python MCU, the C host build and QEMU,
and the exhaustive enumeration of §10.5 (simulators/mcu/cutcheck.py) against the C core.

Each run cuts power at the Nth flash operation of an update (``--fault cut-op=N``,
a torn write), powers the part on again and asserts what §10 promises: it boots an
image whose bytes are the old or the new one, and a clean flash then ends with the
new image confirmed. The cut points are spread over BEGIN, the transfer, VERIFY,
ACTIVATE, the trial boot and the confirm of a 6 KiB image on vmcu-l0.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.mcugw.constants import SlotState
from simulators.mcu.core import _synthetic_image
from simulators.mcu.cutcheck import Update, check, exhaustive, ops_after, repeated, sampled
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.cutnative import NativeDevice, close_server
from simulators.mcu.device import DeviceSpec, open_device
from simulators.mcu.models import MODELS, McuModel
from simulators.mcu.native import SANITIZE_ENV
from simulators.mcu.options import SimOptions
from simulators.mcu.trailer import RecordKind, fold
from tests.sim_harness import SimProcess, cli, cli_json

FAST = ("--baud", "0", "--flash-scale", "0.05", "--model", "vmcu-l0")
OLD_SHA = hashlib.sha256((hashlib.sha256(b"factory-app 1.0.0").digest() * 512)[:16384]).hexdigest()
# The update takes about 30 flash operations (2 trailer erases, 3 sector erases, 24
# frames of 256 bytes, checkpoints, COMPLETE, TRIAL, BOOT, CONFIRMED); the last cut
# lands in the trial boot or the confirm.
CUTS = {"python": (2, 9, 24, 33), "c": (1, 3, 7, 16, 27, 31, 33), "qemu": (2, 12, 30, 33)}


@pytest.fixture(autouse=True)
def _sanitized_c_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host build runs under ASan and UBSan here: a torn write must not be an overrun."""
    monkeypatch.setenv(SANITIZE_ENV, "1")


@pytest.mark.parametrize(
    ("impl", "op"),
    [(i, op) for i in ("python", "c") for op in CUTS[i]] + [("qemu", op) for op in CUTS["qemu"]],
)
def test_cut_at_any_flash_op_leaves_a_bootable_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str, op: int
) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(random.Random(op).randbytes(6 * 1024 + 3))
    new_sha = hashlib.sha256(image.read_bytes()).hexdigest()
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", impl))
    flash = ("flash", "--baud", "0", str(image), "--version", "2.0.0")
    sim.start()  # factory install on blank flash; cut-op counts from the next power-on
    sim.stop()
    sim.start(["--fault", f"cut-op={op}"])
    try:
        cli(capsys, flash[0], "--port", sim.port, *flash[1:])
        assert sim.wait_exit(timeout=30) == 3  # every listed op is part of the update
        sim.start()
        code, info, err = cli_json(capsys, "info", "--port", sim.port)
        assert code == 0, err
        assert info["mode"] == "app", f"cut at op {op} left no bootable image: {info}"
        running = info["slots"][info["running_slot"]]["sha256"]
        assert running in (OLD_SHA, new_sha)
        code, result, err = cli_json(capsys, flash[0], "--port", sim.port, *flash[1:])
        assert code == 0, err
        assert result["outcome"] == "confirmed"
        code, info, _ = cli_json(capsys, "info", "--port", sim.port)
        assert info["slots"][info["running_slot"]]["sha256"] == new_sha
    finally:
        sim.stop()


def _trial_pending(state: Path) -> str:
    """A vmcu-l0 state dir (written by the Python model) whose slot 1 waits for its trial boot."""
    core = open_device(DeviceSpec(state_dir=state, model="vmcu-l0"), SimOptions(), 0)
    try:
        trailer = core.trailers[1]
        image = b"\x5a" * core.model.sector_size
        core.flash.erase_sector(trailer.image_base)
        core.flash.program(trailer.image_base, image)
        trailer.append(RecordKind.BEGIN, len(image), hashlib.sha256(image).digest(), "2.0.0")
        trailer.append(RecordKind.COMPLETE)
        trailer.append(RecordKind.TRIAL, 2)
    finally:
        core.flash.close()
    return hashlib.sha256(image).hexdigest()


def _power_on(state: Path, impl: str, *extra: str) -> tuple[int | None, str]:
    """Start the simulator: (None, port) once it serves, or (exit status, stderr) if it died."""
    sim = SimProcess(state, ("--baud", "0", "--impl", impl, *extra))
    try:
        try:
            sim.start()
        except RuntimeError as exc:  # exited before announcing a port
            status = sim.wait_exit(timeout=10)
            return status, f"{exc} {sim.stderr()}"  # stderr is in one of the two
        if impl == "qemu":  # the port is announced before the guest boots; a cut ends it at once
            try:
                status = sim.wait_exit(timeout=5)
                return status, sim.stderr()
            except subprocess.TimeoutExpired:
                pass
        return None, sim.port
    finally:
        sim.stop()


@pytest.mark.parametrize("impl", ["c", "qemu"])
def test_power_ons_cut_at_the_trial_boot_end_with_the_old_image(tmp_path: Path, impl: str) -> None:
    """Issue 8's first brick: every power-on is cut while it records the trial boot."""
    state = tmp_path / "mcu"
    _trial_pending(state)
    for n in range(6):
        status, err = _power_on(state, impl, "--fault", "cut-phase=boot:1")
        assert status == 3, f"power-on {n + 1}: {err}"
        assert "power cut" in err and "power-on" in err, f"power-on {n + 1}: {err!r}"
        if impl == "c":
            assert "PTY" not in err  # never announced a port it could not serve
    # Each cut tore one record; the torn ones count as boot attempts, so the trial is over.
    status, _ = _power_on(state, impl)
    assert status is None
    m = MODELS["vmcu-l0"]
    data = (state / "flash.bin").read_bytes()
    slot1 = fold(data[m.region_size + m.slot_size : 2 * m.region_size])
    slot0 = fold(data[m.slot_size : m.region_size])
    assert slot1.state is SlotState.INVALID
    assert slot0.state is SlotState.CONFIRMED and slot0.version == "1.0.0"


# ------------------------------------------------------------------ the C core, enumerated


@pytest.fixture(scope="module")
def _cutdev() -> Iterator[None]:
    yield
    close_server()


def _c_update(model: McuModel) -> Update:
    """The Python model's own check (tests/simulators/test_mcu_powercut.py): 3 sectors, ragged."""
    return Update(
        image=random.Random(5).randbytes(3 * model.sector_size - 100),
        version="2.0.0",
        old_sha256=hashlib.sha256(_synthetic_image("1.0.0")).digest(),
        max_data=model.max_data,
        boot_s=model.boot_ms / 1000,
    )


@pytest.mark.usefixtures("_cutdev")
@pytest.mark.parametrize("name", ["vmcu-l0", "vmcu-f4"])
def test_c_core_survives_a_cut_at_every_flash_op(name: str) -> None:
    """§10.5 against the C code (ports/host/cutdev.c under ASan+UBSan), as for the model."""
    model = MODELS[name]
    up = _c_update(model)

    def make() -> NativeDevice:
        return NativeDevice(name)

    ops = ops_after(make, up, ())
    # The same flash operations, in number, as the Python model's for the same update, but
    # for a ragged last frame: C programs its whole write units, then one padded unit (the
    # frame sits in the receive buffer, which has no room to pad in place); Python one op.
    ragged = (len(up.image) - len(up.image) // model.max_data * model.max_data) % model.write_size
    assert ops == ops_after(lambda: SimDevice(model), up, ()) + (1 if ragged else 0)
    report = check(make, up, exhaustive(make, up, 1))
    assert report.sequences == report.cuts == ops
    assert set(report.outcomes) == {"old", "new"}


@pytest.mark.usefixtures("_cutdev")
def test_c_core_survives_every_pair_of_cuts_and_triples() -> None:
    model = MODELS["vmcu-l0"]
    up = _c_update(model)

    def make() -> NativeDevice:
        return NativeDevice("vmcu-l0")

    pairs = check(make, up, exhaustive(make, up, 2))
    assert pairs.sequences > 500
    assert pairs.cuts >= pairs.sequences * 2 - 40
    same = check(make, up, repeated(make, up, 3))
    assert same.cuts > 2 * same.sequences
    mixed = check(make, up, sampled(make, up, 3, count=120, seed=8))
    assert mixed.sequences == 120
    assert set(mixed.outcomes) == {"old", "new"}

"""A trial image that hangs is reset by the watchdog and rolled back (issue 18, §10.3).

`--fault hang-on-boot=VER` makes the app of that version stop dead 30 ms after booting: no
answers, no confirm, no watchdog feeding, and no reset of its own (unlike crash-on-boot).
The only way out is the independent watchdog the bootloader armed before the trial boot:
on `--impl qemu` the guest really spins in a loop and the emulated LM3S6965 watchdog
resets the machine; the C host port and the Python model time it the same way (1 s).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from simulators.mcu.native import SANITIZE_ENV
from tests.sim_harness import SimProcess, cli_json

FAST = ("--baud", "0", "--model", "vmcu-l0")


@pytest.fixture(autouse=True)
def _sanitized_c_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host build runs under ASan and UBSan here."""
    monkeypatch.setenv(SANITIZE_ENV, "1")


@pytest.mark.parametrize("impl", ["python", "c", "qemu"])
def test_a_hanging_trial_image_is_reset_by_the_watchdog_and_rolled_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(random.Random(3).randbytes(20_000))
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", impl))
    sim.start(["--fault", "hang-on-boot=3.0.0"])
    try:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "3.0.0"
        )
        assert code == 1, err
        assert result["outcome"] == "rolled_back"
        assert result["running_version"] == "1.0.0"
        code, info, err = cli_json(capsys, "info", "--port", sim.port, "--baud", "0")
        assert code == 0, err
        assert info["mode"] == "app" and info["running_version"] == "1.0.0"
        trial = info["slots"][result["slot"]]
        assert trial["state"] == "invalid"
        assert trial["boot_count"] == 2  # vmcu-l0: max_trial_boots, each one reset by the watchdog
    finally:
        sim.stop()

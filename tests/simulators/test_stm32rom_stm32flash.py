"""stm32flash, the C tool most STM32 users flash with, against the simulated ROM loader.

Each call is the stm32flash process on the simulator's pty, as a user runs it:
``-m 8n1`` because a pty carries no parity bit; ``-c`` on calls after the first
of a session, as the loader is synced already (a second 0x7F would be read as a
command and NACKed, as on a real part).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sim_harness import SimProcess

STM32FLASH = shutil.which("stm32flash")
pytestmark = pytest.mark.skipif(STM32FLASH is None, reason="stm32flash is not installed")
SIM = ("--bootloader", "stm32-rom", "--baud", "115200", "--flash-scale", "0.05", "--boot0",
       "high")  # fmt: skip


def _run(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert STM32FLASH is not None
    cmd = [STM32FLASH, "-m", "8n1", "-b", "115200", *args, port]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("model", "device_id", "erase_unit"),
    [("stm32f103", "0x0410", 1024), ("stm32f407", "0x0413", 16 * 1024)],
)
def test_write_verify_read_erase_and_go(
    tmp_path: Path, model: str, device_id: str, erase_unit: int
) -> None:
    app = random.Random(model).randbytes(5000)
    (tmp_path / "app.bin").write_bytes(app)
    back = tmp_path / "back.bin"
    sim = SimProcess(tmp_path / "mcu", (*SIM, "--model", model)).start()
    try:
        info = _ok(_run(sim.port))
        assert f"Device ID    : {device_id}" in info
        # Write at an offset: it erases the pages or sectors the file covers, verifies each block.
        at = 0x0800_0000 + erase_unit
        out = _ok(_run(sim.port, "-c", "-w", str(tmp_path / "app.bin"), "-v", "-S", f"{at:#x}"))
        assert "Wrote and verified" in out
        _ok(_run(sim.port, "-c", "-r", str(back), "-S", f"{at:#x}:{len(app)}"))
        assert back.read_bytes() == app
        # Erase only those units again (stm32flash wants whole ones): blank.
        units = -(-len(app) // erase_unit) * erase_unit
        _ok(_run(sim.port, "-c", "-o", "-S", f"{at:#x}:{units}"))
        _ok(_run(sim.port, "-c", "-r", str(back), "-S", f"{at:#x}:{len(app)}"))
        assert back.read_bytes() == b"\xff" * len(app)
        # At the start of flash, then Go: the app runs and no longer answers AN3155.
        out = _ok(_run(sim.port, "-c", "-w", str(tmp_path / "app.bin"), "-v", "-g", "0x08000000"))
        assert "Starting execution at address 0x08000000... done." in out
        assert _run(sim.port, "-c", "-r", str(back), "-S", "0x08000000:256").returncode != 0
        sim.restart()  # power cycle, BOOT0 high: the loader again, the flash kept
        _ok(_run(sim.port, "-r", str(back), "-S", f"0x08000000:{len(app)}"))
        assert back.read_bytes() == app
    finally:
        sim.stop()


def test_f1_flash_is_not_rewritten_without_an_erase(tmp_path: Path) -> None:
    """``-e 0`` writes without erasing: an F1 skips half-words that are not erased
    (PM0075 2.3.3) and its ROM ACKs, so stm32flash's verify is what catches it."""
    first = random.Random(1).randbytes(1024)
    second = bytes(b ^ 0x5A for b in first)
    (tmp_path / "first.bin").write_bytes(first)
    (tmp_path / "second.bin").write_bytes(second)
    sim = SimProcess(tmp_path / "mcu", (*SIM, "--model", "stm32f103")).start()
    try:
        _ok(_run(sim.port, "-w", str(tmp_path / "first.bin"), "-v"))
        again = _run(sim.port, "-c", "-e", "0", "-w", str(tmp_path / "second.bin"), "-v")
        assert again.returncode != 0
        assert "Failed to verify at address 0x08000000" in again.stdout + again.stderr
    finally:
        sim.stop()

"""`mcu-gateway demo` on this machine: exits 0 with 4 MCUs and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        if text in args and "pytest" not in args:
            found.append(args)
    return found


def test_demo_exits_zero_with_four_mcus(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--mcus", "4", "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all 4 MCUs report 2.0.0 as current" in proc.stdout
    # Everything it started is gone: no simulator still holds its state directory.
    assert _processes_mentioning(str(tmp_path)) == []
    # Secrets never reach the log: not the DPS group key, nor anything derived from it.
    (log,) = tmp_path.glob("gateway.log")
    text = log.read_text()
    assert "MCU" in text or "mcu=" in text
    for key_file in tmp_path.glob("lab-*/group.key"):
        assert key_file.read_text().strip() not in text
    assert "SharedAccessKey" not in text
    assert "sig=" not in text


def test_demo_rollout_halts_the_refused_model_and_pinpoints_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--rollout", "--mcus", "5",
         "--size", "32768", "--state", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "demo-vmcu-h7: HALTED: ring 1 (canary): 1 of 1 MCUs failed" in out
    assert "demo-vmcu-f4: ring 1 (canary) passed" in out
    assert "demo-vmcu-f4: done: ring 2 (all): 2 of 2 MCUs current" in out
    assert "UNTRUSTED_KEY" in out and "verifying" in out
    assert "as expected: vmcu-h7 halted at its canary" in out
    assert _processes_mentioning(str(tmp_path)) == []
    (log,) = tmp_path.glob("gateway.log")
    assert "SharedAccessKey" not in log.read_text()


def test_demo_rollout_with_the_three_bootloaders(tmp_path: Path) -> None:
    """--mix --rollout: the lab's kinds (stm32f103) are not the models drivers report."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--rollout", "--mix", "--mcus", "4",
         "--size", "32768", "--state", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "demo-vmcu-nrf52840: HALTED: ring 1 (canary)" in out
    for name in ("demo-stm32f103", "demo-vmcu-f4", "demo-vmcu-l0"):
        assert f"{name}: done: ring 2 (all): 1 of 1 MCUs current" in out
    assert _processes_mentioning(str(tmp_path)) == []


def test_demo_mixes_the_three_bootloaders(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--mix", "--mcus", "3",
         "--size", "32768", "--state", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "all 3 MCUs report 2.0.0 as current" in out
    for model in ("vmcu-f4", "stm32f10x-md", "vmcu_nrf52840"):
        assert model in out
    assert _processes_mentioning(str(tmp_path)) == []

"""`mcu-gateway demo` on this machine: exits 0 with 4 MCUs and leaves nothing running."""

from __future__ import annotations

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

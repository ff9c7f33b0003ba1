"""`flash` shows a progress bar when stdout is a terminal, and none when it is not."""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.sim_harness import running_sim


def _read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = select.select([fd], [], [], 0.1)[0]
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break  # EIO: the child closed its terminal
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(random.Random(3).randbytes(200_000))
    with running_sim(tmp_path / "mcu", "--baud", "460800", "--flash-scale", "0.05") as sim:
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "flash", "--port", sim.port,
                 "--baud", "460800", str(image), "--version", "2.0.0"],
                stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "100"},
            )  # fmt: skip
            os.close(slave)
            output = _read_all(master, proc, timeout=60).decode(errors="replace")
            assert proc.wait(timeout=10) == 0, output
        finally:
            os.close(master)
    assert "writing" in output  # the bar's step label
    assert "kB" in output or "KB" in output  # rich's transfer column
    assert "confirmed: version 2.0.0" in output

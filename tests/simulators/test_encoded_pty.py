"""A power cut during a compressed transfer, with real processes on a pty: the simulator
loses power mid-stream, and the next `flash` resumes at a block boundary (§17.3)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from tests.sim_harness import SimProcess, cli, cli_json
from tests.simulators.test_mcu_pty import FAST


def _code_like(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(700)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


def test_a_power_cut_mid_stream_resumes_at_a_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 384 * 1024  # six 64 KiB LZMA blocks
    image = tmp_path / "fw.bin"
    image.write_bytes(_code_like(5, size))
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", "python"))
    sim.start(["--fault", "cut-at=70%"])
    try:
        argv = ("--baud", "0", str(image), "--version", "2.0.0")
        code, _, err = cli(capsys, "flash", "--port", sim.port, *argv)
        assert code != 0 and "error" in err
        assert sim.wait_exit(timeout=10) == 3  # the simulator lost power mid-stream
        sim.start()  # power back on: a new pty
        code, result, err = cli_json(capsys, "flash", "--port", sim.port, *argv)
        assert code == 0, err
        assert result["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        details = result.get("details", result)
        assert details["encoding"] == "compressed"
        # Resumed at a block end (in image bytes, a multiple of 64 KiB), not at zero.
        assert result["resumed_from"] > 0 and result["resumed_from"] % (64 * 1024) == 0
        assert result["wire_bytes_tx"] < 0.6 * details["streamBytes"]
    finally:
        sim.stop()

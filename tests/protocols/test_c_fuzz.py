"""Hostile frames into the C core under AddressSanitizer and UBSan (ports/host/fuzz.c).

Seeded, so a failure repeats; about 90 % of the core's lines are reached (window, draining,
BUSY, checkpoints, VERIFY, ACTIVATE, trial boot, CONFIRM). Every CRC-valid request that
fits the device's buffer must be answered with its seq and opcode.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulators.mcu.native import SOURCE_DIR

FRAMES = 100_000


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "bl-fuzz"
    srcs = ["src/bl_core.c", "src/bl_trailer.c", "src/bl_sha256.c", "ports/host/fuzz.c"]
    flags = ["-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cmd = ["cc", *flags, "-Wall", "-Wextra", "-Werror", "-Iinclude", "-Isrc", *srcs, "-o", str(out)]
    proc = subprocess.run(cmd, cwd=SOURCE_DIR, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_core_survives_hostile_frames_and_answers_every_request(fuzzer: Path, seed: int) -> None:
    proc = subprocess.run(
        [fuzzer, str(seed), str(FRAMES)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok {FRAMES} answered=")
    answered = int(proc.stdout.split("answered=")[1])
    assert answered > FRAMES // 2  # most frames are decodable requests, and all of those answered

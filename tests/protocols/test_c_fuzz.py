"""Hostile frames into the C core under AddressSanitizer and UBSan (ports/host/fuzz.c).

Seeded, so a failure repeats; about 90 % of the core's lines are reached (window, draining,
BUSY, checkpoints, VERIFY, ACTIVATE, trial boot, CONFIRM). Every CRC-valid request that
fits the device's buffer must be answered with its seq and opcode. The same traffic runs
over odd geometries (issue 18): every write size from 1 to 32 bytes with the largest
window the build holds, stop-and-wait, small sectors, a 64-record trailer; geometries the
buffers cannot hold are refused by bl_init with a reason, never run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulators.mcu.native import CORE, INC, SANITIZE, SOURCE_DIR

FRAMES = 100_000
GEOMETRY_FRAMES = 25_000


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "bl-fuzz"
    # C11 here, so the _Static_asserts on the model table are the real ones.
    cmd = ["cc", "-std=c11", *SANITIZE, "-Wall", "-Wextra", "-Wpedantic", "-Werror", *INC]
    cmd += [*CORE, "ports/host/fuzz.c", "-o", str(out)]
    proc = subprocess.run(cmd, cwd=SOURCE_DIR, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(fuzzer: Path, seed: int, frames: int, *geometry: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fuzzer, str(seed), str(frames), *geometry],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_core_survives_hostile_frames_and_answers_every_request(fuzzer: Path, seed: int) -> None:
    proc = _run(fuzzer, seed, FRAMES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok {FRAMES} answered=")
    answered = int(proc.stdout.split("answered=")[1])
    assert answered > FRAMES // 2  # most frames are decodable requests, and all of those answered


@pytest.mark.parametrize(
    "geometry",
    [
        # Every write size with the largest window of the host build (16 KiB): the
        # held-unit bitmap once assumed 4-byte writes and overran at 1 and 2.
        *[
            (f"write={w}", "max_data=2048", "window=16384", "sector=8192", "trailer=8192")
            for w in (1, 2, 4, 8, 16, 32)
        ],
        ("write=1", "max_data=256", "window=256"),  # stop-and-wait, byte programming
        ("write=2", "sector=1024", "max_data=512", "window=1536"),  # F1-like half-words
        ("write=32", "max_data=32", "window=96", "sector=1024"),  # one write unit per frame
        ("write=8", "trailer=8192", "window=1000", "max_data=200"),  # 64 records, odd window
    ],
)
def test_odd_geometries_survive_hostile_frames(fuzzer: Path, geometry: tuple[str, ...]) -> None:
    proc = _run(fuzzer, 7, GEOMETRY_FRAMES, *geometry)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok {GEOMETRY_FRAMES} answered=")


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        (("write=64",), "write_size is above BL_WRITE_MAX of this build"),
        (("write=256", "max_data=256", "window=1024"), "write_size must divide a 128-byte"),
        (("write=3",), "write_size must be a power of two"),
        (("write=0",), "write_size must be a power of two"),
        (("window=32768",), "window is above BL_WINDOW_MAX of this build"),
        (("max_data=4096", "window=8192"), "max_data is above BL_MAX_DATA_MAX of this build"),
        (("max_data=254",), "max_data must be a non-zero multiple of write_size"),
        (("window=128",), "window must be at least max_data"),
        (("window=1022",), "window must be at least max_data and a multiple of write_size"),
        (("sector=1000",), "slot_size must be a non-zero multiple of sector_size"),
        (("trailer=1024", "sector=1024"), "trailer_size must hold max_trial_boots + 7 records"),
        (("trailer=3000",), "trailer_size must be a multiple of sector_size"),
    ],
)
def test_geometries_the_buffers_cannot_hold_are_refused(
    fuzzer: Path, geometry: tuple[str, ...], reason: str
) -> None:
    proc = _run(fuzzer, 1, 10, *geometry)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"refused: {reason}"), proc.stdout

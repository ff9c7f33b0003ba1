"""Helpers for MCUboot tests: images signed by the real ``imgtool``."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

from protocols.driver import Image


def imgtool_sign(tmp: Path, body: bytes, version: str, slot_size: int = 0x40000) -> bytes:
    """Sign ``body`` with the real ``imgtool`` as a firmware build would."""
    raw, out = tmp / f"app-{version}.bin", tmp / f"app-{version}.signed.bin"
    raw.write_bytes(body)
    subprocess.run(
        [
            sys.executable, "-m", "imgtool.main", "sign", "--header-size", "0x200",
            "--align", "4", "--slot-size", hex(slot_size), "--version", version,
            "--pad-header", str(raw), str(out),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def signed(tmp: Path, version: str, size: int = 20_000, seed: int = 3) -> Image:
    """A driver :class:`Image` of ``size`` random bytes signed as ``version``."""
    data = imgtool_sign(tmp, random.Random(seed).randbytes(size), version)
    return Image(data, version, hashlib.sha256(data).hexdigest())

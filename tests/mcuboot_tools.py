"""Helpers for MCUboot tests: images signed by the real ``imgtool``."""

from __future__ import annotations

import hashlib
import os
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


def imgtool_keygen(tmp: Path, name: str, kind: str = "ecdsa-p256") -> Path:
    """A signing key made by ``imgtool keygen`` (private PEM)."""
    path = tmp / f"{name}.pem"
    subprocess.run(
        [sys.executable, "-m", "imgtool.main", "keygen", "-k", str(path), "-t", kind],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


def imgtool_sign_with(
    tmp: Path,
    body: bytes,
    version: str,
    key: Path | None = None,
    *,
    slot_size: int = 0x40000,
    pad: bool = False,
    confirm: bool = False,
) -> bytes:
    """``imgtool sign`` with a key and/or ``--pad`` (``--confirm``), as a build would."""
    raw, out = tmp / f"app-{version}.bin", tmp / f"app-{version}-{os.getpid()}.signed.bin"
    raw.write_bytes(body)
    extra = ["--key", str(key)] if key is not None else []
    extra += ["--pad"] if pad else []
    extra += ["--confirm"] if confirm else []
    subprocess.run(
        [
            sys.executable, "-m", "imgtool.main", "sign", "--header-size", "0x200",
            "--align", "8", "--slot-size", hex(slot_size), "--version", version,
            "--pad-header", *extra, str(raw), str(out),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def as_image(data: bytes, version: str) -> Image:
    return Image(data, version, hashlib.sha256(data).hexdigest())

"""A really small file system for full-disk tests: a tmpfs mounted for the test.

Mounting needs root (CI runs as root). Where it is impossible the test fails
with the reason: a full-disk test that silently did not run proves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_fs(where: Path, size: str = "3m", *, read_only: bool = False) -> Iterator[Path]:
    """A fresh ``size`` tmpfs at ``where``, unmounted (and its contents gone) afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a {size} tmpfs at {where} for the full-disk test (run as root): "
            f"{done.stderr.strip() or done.returncode}",
            pytrace=False,
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def free(path: Path) -> int:
    return shutil.disk_usage(path).free


def fill(path: Path, leave: int) -> Path:
    """Fill ``path``'s file system until about ``leave`` bytes remain; returns the filler."""
    filler = path / "filler"
    block = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while (room := free(path) - leave) > 0:
            try:
                os.write(fd, block[: min(len(block), room)])
            except OSError:
                break
    finally:
        os.close(fd)
    return filler

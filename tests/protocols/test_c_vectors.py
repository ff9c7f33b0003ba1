"""The C reference bootloader's frame layer against the normative wire vectors (§13)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from simulators.mcu.native import CORE, INC, SANITIZE, SOURCE_DIR
from tests.vectors.messages import FRAMES_JSON


def _build(tmp_path: Path) -> Path:
    out = tmp_path / "bl-vectors"
    cmd = ["cc", "-std=c99", *SANITIZE, "-Wall", "-Wextra", "-Werror", *INC]
    subprocess.run(
        [*cmd, *CORE, "ports/host/vectors.c", "-o", str(out)], cwd=SOURCE_DIR, check=True
    )
    return out


def _lines(records: list[dict[str, str]]) -> str:
    return "".join(f"{r['hex']} {r['body']}\n" for r in records)


def test_every_vector_decodes_encodes_and_rejects_single_bit_flips(tmp_path: Path) -> None:
    records = json.loads(Path(FRAMES_JSON).read_text())
    tool = _build(tmp_path)
    proc = subprocess.run([tool], input=_lines(records), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == f"ok {len(records)}"
    names = {r["name"] for r in records}
    assert "data_request_cobs_ff_end" in names  # the §3.1 end-of-body exception is pinned


def test_the_harness_catches_a_wrong_vector(tmp_path: Path) -> None:
    records = json.loads(Path(FRAMES_JSON).read_text())
    bad = dict(records[0])
    bad["hex"] = bad["hex"][:-4] + "0200"  # a final COBS code pointing past the frame
    tool = _build(tmp_path)
    proc = subprocess.run([tool], input=_lines([bad]), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "vector 0" in proc.stdout

"""`mcu-gateway flash` with signed packages: verified against the MCU before a byte is written."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from tests.sim_harness import cli, cli_json, running_sim

FAST = ("--baud", "0", "--flash-scale", "0.05")


def _pack(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *, model: str, version: str, key: Path
) -> tuple[Path, bytes]:
    payload = random.Random(version).randbytes(40_000)
    src = tmp_path / f"app-{version}.bin"
    src.write_bytes(payload)
    out = tmp_path / f"app-{model}-{version}.mcufw"
    code, _, err = cli(
        capsys, "image", "pack", str(src), "-o", str(out), "--provider", "contoso",
        "--name", "sensor-app", "--version", version, "--manufacturer", "contoso",
        "--model", model, "--key", f"{key}.key",
    )  # fmt: skip
    assert code == 0, err
    return out, payload


@pytest.fixture
def key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = cli(capsys, "image", "keygen", "--out", str(tmp_path / "release"))
    assert code == 0, err
    return tmp_path / "release"


def test_signed_package_flashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Path
) -> None:
    package, payload = _pack(capsys, tmp_path, model="vmcu-f4", version="2.0.0", key=key)
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(package),
            "--trust", f"{key}.pub",
        )  # fmt: skip
        assert code == 0, err
        assert result["version"] == "2.0.0"
        assert result["sha256"] == hashlib.sha256(payload).hexdigest()  # the payload, not the file


def test_incompatible_package_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Path
) -> None:
    package, _ = _pack(capsys, tmp_path, model="vmcu-h7", version="2.0.0", key=key)
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        _, before, _ = cli_json(capsys, "info", "--port", sim.port, "--baud", "0")
        flash_before = (tmp_path / "mcu" / "flash.bin").read_bytes()
        code, _, err = cli(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(package),
            "--trust", f"{key}.pub",
        )  # fmt: skip
        assert code != 0
        assert "vmcu-h7" in err
        assert "vmcu-f4" in err
        _, after, _ = cli_json(capsys, "info", "--port", sim.port, "--baud", "0")
        assert after["slots"] == before["slots"]
        assert (tmp_path / "mcu" / "flash.bin").read_bytes() == flash_before


def test_untrusted_signature_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Path
) -> None:
    package, _ = _pack(capsys, tmp_path, model="vmcu-f4", version="2.0.0", key=key)
    code, _, err = cli(capsys, "image", "keygen", "--out", str(tmp_path / "other"))
    assert code == 0, err
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        code, _, err = cli(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(package),
            "--trust", str(tmp_path / "other.pub"),
        )  # fmt: skip
        assert code != 0
        assert "UNTRUSTED" in err.upper()


def test_raw_image_needs_a_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "fw.bin"
    raw.write_bytes(b"\x01" * 100)
    code, _, err = cli(capsys, "flash", "--port", "loop://", str(raw))
    assert code != 0
    assert "give --version" in err
    code, _, err = cli(capsys, "flash", "--port", "loop://", str(raw), "--version", "two")
    assert code != 0
    assert "not a semantic version" in err

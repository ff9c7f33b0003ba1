from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from gateway.cli import main

PACK_FIELDS = [
    "--provider",
    "contoso",
    "--name",
    "sensor-app",
    "--manufacturer",
    "contoso",
    "--model",
    "vmcu-f4",
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["image", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def keypair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, _ = _run(capsys, "keygen", "--out", str(tmp_path / "rel"), "--json")
    assert code == 0
    assert json.loads(out)["algorithm"] == "ed25519"
    return tmp_path / "rel"


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "app.bin"
    path.write_bytes(os.urandom(5000))
    return path


def _pack(capsys: pytest.CaptureFixture[str], payload: Path, out: Path, *extra: str) -> dict:
    code, text, err = _run(
        capsys,
        "pack",
        str(payload),
        "-o",
        str(out),
        "--version",
        "1.2.3",
        *PACK_FIELDS,
        "--json",
        *extra,
    )
    assert code == 0, err
    return dict(json.loads(text))


def test_keygen_private_key_is_0600_and_secret_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "keygen", "--out", str(tmp_path / "k"), "--alg", "p256")
    assert code == 0
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert "PRIVATE" not in out
    assert "ecdsa-p256" in out
    code, _, err = _run(capsys, "keygen", "--out", str(tmp_path / "k"))
    assert code != 0
    assert "exists" in err


def test_pack_verify_inspect_round_trip(
    tmp_path: Path, keypair: Path, payload: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = tmp_path / "app.fwpkg"
    info = _pack(capsys, payload, pkg, "--key", f"{keypair}.key", "--hwrev", "B")
    assert info["signed"] is True
    assert info["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    code, out, _ = _run(
        capsys,
        "verify",
        str(pkg),
        "--pubkey",
        f"{keypair}.pub",
        "--check-value",
        info["sha256"],
        "--compat",
        "contoso:vmcu-f4:B",
        "--installed",
        "1.0.0",
    )
    assert code == 0
    assert "signature: ed25519 by trusted key" in out
    assert "compatible with contoso:vmcu-f4:B" in out
    code, out, _ = _run(capsys, "inspect", str(pkg), "--json")
    shown = json.loads(out)
    assert shown["manifest"]["updateId"]["version"] == "1.2.3"
    assert shown["manifest"]["compatibility"]["hardwareRevision"] == "B"
    assert shown["signature"]["algorithm"] == "ed25519"
    code, out, _ = _run(capsys, "inspect", str(pkg))
    assert "sensor-app 1.2.3" in out


def test_verify_names_the_exact_reason(
    tmp_path: Path, keypair: Path, payload: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = tmp_path / "app.fwpkg"
    _pack(capsys, payload, pkg)
    code, _, err = _run(capsys, "verify", str(pkg), "--pubkey", f"{keypair}.pub")
    assert code != 0
    assert "UNSIGNED" in err
    code, _, _ = _run(capsys, "sign", str(pkg), "--key", f"{keypair}.key")
    assert code == 0
    code, _, err = _run(
        capsys, "verify", str(pkg), "--pubkey", f"{keypair}.pub", "--compat", "contoso:vmcu-l0:"
    )
    assert code != 0
    assert "INCOMPATIBLE_MODEL" in err
    data = bytearray(pkg.read_bytes())
    data[1000] ^= 1  # inside the payload
    pkg.write_bytes(bytes(data))
    code, _, err = _run(capsys, "verify", str(pkg), "--pubkey", f"{keypair}.pub")
    assert code != 0
    assert "PAYLOAD_HASH_MISMATCH" in err
    assert err.count("\n") == 1


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "inspect", str(tmp_path / "none.fwpkg"))
    assert code != 0
    assert "none.fwpkg" in err
    assert err.count("\n") == 1


def test_pack_rejects_bad_version(
    tmp_path: Path, payload: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys, "pack", str(payload), "-o", str(tmp_path / "x"), "--version", "one", *PACK_FIELDS
    )
    assert code != 0
    assert "semantic version" in err

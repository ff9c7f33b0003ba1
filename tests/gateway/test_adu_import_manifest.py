"""``image pack --adu-manifest``: an ADU import manifest v5, or a refusal before any file."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from firmware.package import manifest_for
from gateway.adu.errors import AduManifestError
from gateway.adu.importmanifest import HANDLER, adu_version, import_manifest
from gateway.cli import main
from simulators.hub.adu import importer

PACK = [
    "--provider",
    "contoso",
    "--name",
    "sensor-app",
    "--manufacturer",
    "contoso",
    "--model",
    "vmcu-f4",
]


def test_manifest_passes_the_emulators_import_rules() -> None:
    data = b"\x01" * 1000
    m = manifest_for(
        data,
        provider="contoso",
        name="sensor-app",
        version="1.2.3",
        manufacturer="contoso",
        model="vmcu-f4",
    )
    doc = import_manifest(m, file_name="app.mcufw", package=b"pkg")
    importer.validate(doc)  # the same rules the local ADU service applies on import
    step = doc["instructions"]["steps"][0]
    assert step["handler"] == HANDLER
    assert step["handlerProperties"] == {"installedCriteria": "1.2.3"}
    assert doc["compatibility"] == [{"manufacturer": "contoso", "model": "vmcu-f4"}]
    assert (
        doc["files"][0]["hashes"]["sha256"]
        == base64.b64encode(hashlib.sha256(b"pkg").digest()).decode()
    )


@pytest.mark.parametrize(
    "version", ["1.2.3-rc.1", "1.2.3+build.5", "1", "1.2.3.4.5", "3000000000.0"]
)
def test_versions_adu_cannot_express_are_refused(version: str) -> None:
    with pytest.raises(AduManifestError):
        adu_version(version)


def test_pack_writes_the_import_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "app.bin"
    payload.write_bytes(b"\x02" * 2048)
    pkg, adu = tmp_path / "app.mcufw", tmp_path / "app.importmanifest.json"
    argv = [
        "image",
        "pack",
        str(payload),
        "-o",
        str(pkg),
        "--version",
        "2.0.1",
        *PACK,
        "--adu-manifest",
        str(adu),
    ]
    assert main(argv) == 0
    doc = json.loads(adu.read_text())
    assert doc["updateId"] == {"provider": "contoso", "name": "sensor-app", "version": "2.0.1"}
    assert doc["files"][0] == {
        "filename": "app.mcufw",
        "sizeInBytes": pkg.stat().st_size,
        "hashes": {"sha256": base64.b64encode(hashlib.sha256(pkg.read_bytes()).digest()).decode()},
    }


def test_pack_refuses_a_prerelease_for_adu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "app.bin"
    payload.write_bytes(b"\x02" * 2048)
    pkg, adu = tmp_path / "app.mcufw", tmp_path / "app.importmanifest.json"
    argv = [
        "image",
        "pack",
        str(payload),
        "-o",
        str(pkg),
        "--version",
        "2.0.1-beta.1",
        *PACK,
        "--adu-manifest",
        str(adu),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--adu-manifest" in err and "pre-release" in err
    assert not pkg.exists() and not adu.exists()

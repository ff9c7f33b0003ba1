"""`image inspect` and `image verify` on hostile manifests: MANIFEST_INVALID, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from tests.firmware.test_hostile_manifest import hostile_manifests, unsigned_package


@pytest.mark.parametrize("name", sorted(hostile_manifests()))
@pytest.mark.parametrize("command", [["inspect"], ["verify", "--allow-unsigned"]])
def test_image_cli_names_manifest_invalid(
    name: str, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = tmp_path / "hostile.fwpkg"
    pkg.write_bytes(unsigned_package(hostile_manifests()[name]))
    capsys.readouterr()
    code = main(["image", command[0], str(pkg), *command[1:]])
    _, err = capsys.readouterr()
    assert code != 0
    assert "MANIFEST_INVALID" in err
    assert "Traceback" not in err and err.count("\n") == 1

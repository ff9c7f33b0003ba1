"""``mcu-gateway adu verify``: what an operator runs on a service value copied from a twin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.adu_fixtures import adu_fixture


def test_verify_prints_what_the_value_holds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adu", "verify", str(adu_fixture("signed-update-startupworkflow.json"))]) == 0
    out = capsys.readouterr().out
    assert "signed by ADU.210609.R.S under root key ADU.200702.R" in out
    assert "Contoso/Virtual-Vacuum/20.0" in out
    assert "microsoft/apt:1" in out


def test_verify_json_and_twin_wrapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = json.loads((adu_fixture("signed-update-startupworkflow.json")).read_text())
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps({"properties": {"desired": {"deviceUpdate": {"service": value}}}}))
    assert main(["adu", "verify", "--json", str(twin)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["updateId"]["version"] == "20.0"
    assert summary["files"][0]["size"] == 136


def test_verify_refuses_the_tampered_copy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adu", "verify", str(adu_fixture("tampered-manifest-same-signature.json"))]) == 1
    err = capsys.readouterr().err
    assert "does not match the signed hash" in err
    assert "80300001" in err
    assert len(err.strip().splitlines()) == 1


def test_verify_refuses_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["adu", "verify", str(bad)]) == 1
    assert "not a readable JSON file" in capsys.readouterr().err

"""Building the C bootloader for `sim --impl c|qemu`: cached, rebuilt on edits, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simulators.mcu import native
from tests.sim_harness import cli


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "bootloader"
    shutil.copytree(native.SOURCE_DIR, copy, ignore=shutil.ignore_patterns("build"))
    monkeypatch.setattr(native, "SOURCE_DIR", copy)
    monkeypatch.setenv("MCU_GATEWAY_CACHE", str(tmp_path / "cache"))
    return copy


def test_host_build_is_cached_and_rebuilt_when_a_source_changes(sources: Path) -> None:
    first = native.build_host()
    assert first.is_file()
    assert native.build_host() == first  # cached: same sources, same binary
    core = sources / "src" / "bl_cmd.c"
    core.write_text(core.read_text() + "\n/* edited */\n")
    second = native.build_host()
    assert second != first
    assert second.is_file()


def test_missing_compiler_is_a_clear_error(
    sources: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    code, _, err = cli(capsys, "sim", "--pty", "--impl", "c", "--state", str(tmp_path / "s"))
    assert code != 0
    assert "no-such-cc not found: install it" in err


def test_broken_source_reports_the_compiler_error(
    sources: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (sources / "src" / "bl_sha256.c").write_text("this is not C\n")
    code, _, err = cli(capsys, "sim", "--pty", "--impl", "c", "--state", str(tmp_path / "s"))
    assert code != 0
    assert "building bl-host failed" in err
    assert "bl_sha256.c" in err


def test_one_mcu_per_native_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(
        capsys, "sim", "--pty", "--impl", "c", "--count", "2", "--state", str(tmp_path)
    )
    assert code != 0
    assert "serves one MCU per process" in err

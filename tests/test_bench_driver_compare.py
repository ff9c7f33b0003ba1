"""bench.driver_compare runs each driver's simulator and reports a row per driver and baud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import driver_compare


def test_one_driver_one_baud_small_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    code = driver_compare.main(
        ["--drivers", "stm32-rom", "--bauds", "921600", "--size", "4K", "--json", str(out)]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["driver", "baud", "image"]
    (row,) = json.loads(out.read_text())
    assert (row["driver"], row["baud"], row["size"], row["status"]) == (
        "stm32-rom", 921600, 4096, "ok")  # fmt: skip
    assert row["outcome"] == "confirmed"
    # Efficiency can never beat the wire: 4 KiB at 921600 baud takes at least 44 ms.
    assert row["install_s"] > 4096 * 10 / 921600
    assert row["wire_tx"] > 4096


def test_a_driver_without_a_simulator_is_skipped_not_fatal(tmp_path: Path) -> None:
    with (
        pytest.raises(driver_compare.BenchError, match="no simulator"),
        driver_compare.running_sim("no-such-loader", 115200, tmp_path / "s", tmp_path / "log"),
    ):
        pass


def test_unknown_driver_names_are_refused() -> None:
    with pytest.raises(SystemExit):
        driver_compare.main(["--drivers", "nope"])

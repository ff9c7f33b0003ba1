"""The HTML report in headless Chromium: one failure shows among 10 and among 10,000 MCUs."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.fleet.report import render, widths
from gateway.fleet.status import Failure, FleetStatus

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def fleet(n: int) -> FleetStatus:
    """``n`` MCUs in one ring: one failed, four updating, the rest current."""
    statuses = {"current": n - 5, "downloading": 4, "error": 1}
    failure = Failure("mcu-0042", "gw-1", "/dev/ttyUSB3", "vmcu-f4", "error", "1.0.0",
                      "2.0.0", "HASH_MISMATCH", "verifying", "image hash differs",
                      "2026-12-06T11:59:00Z")  # fmt: skip
    return FleetStatus(
        total=n, by_model={"vmcu-f4": n}, by_version={"1.0.0": 5, "2.0.0": n - 5},
        by_status=statuses, by_ring={"all": statuses}, by_group={},
        versions_by_model={"vmcu-f4": {"1.0.0": 5, "2.0.0": n - 5}}, failures=[failure],
    )  # fmt: skip


def red_columns(page: str, tmp_path: Path) -> int:
    """Screen columns holding at least 20 red pixels: a bar segment (26 px tall), not the
    legend swatch (12 px) nor red text."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Debian's chromium package is needed (see .ci/run)"
    html, shot = tmp_path / "report.html", tmp_path / "report.png"
    html.write_text(page)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1100,500", html.as_uri()],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    pixels = image.load()
    assert pixels is not None

    def red(x: int, y: int) -> bool:
        r, g, b = pixels[x, y][:3]
        return bool(r > 180 and g < 80 and b < 80)

    return sum(1 for x in range(width) if sum(red(x, y) for y in range(height)) >= 20)


@pytest.mark.parametrize("n", [10, 10_000])
def test_one_failure_is_visible_in_the_picture(n: int, tmp_path: Path) -> None:
    page = render(fleet(n), where=None, now=NOW)
    assert f"{n}: current {n - 5}, downloading 4, error 1" in page  # counts on the bar
    assert "2.0.0" in page.split("Failed or rolled back")[1]  # the target version
    # The error segment of the status chart: at least 6 pixels wide on screen.
    assert red_columns(page, tmp_path) >= 6


def test_small_shares_get_a_minimum_width() -> None:
    got = widths([9995, 4, 1], 520.0)
    assert got[1] >= 6.0 and got[2] == 6.0
    assert sum(got) == pytest.approx(520.0)
    assert widths([0, 0], 100.0) == [0.0, 0.0]
    assert widths([1, 1], 100.0) == [50.0, 50.0]

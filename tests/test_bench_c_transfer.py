"""bench.c_transfer's checks (issue 21 targets on the C build) fail when a figure misses."""

from __future__ import annotations

import pytest

from bench.c_transfer import Row, _targets

IMAGE = 147294
LINK = 115200 / 10  # bytes per second


def _rows(compressed_rate: float, small_share: float = 0.033) -> list[Row]:
    def row(pair: str, mode: str, stream: int, transfer_s: float) -> Row:
        return Row("c", pair, 115200, mode, IMAGE, stream, stream + 2000, transfer_s,
                   transfer_s + 0.4)  # fmt: skip

    return [
        row("cflags", "compressed", 80636, IMAGE / LINK / compressed_rate),
        row("small-change", "delta", round(small_share * IMAGE), 1.8),
        row("lib-upgrade", "delta", round(0.181 * IMAGE), 2.7),
    ]


def test_the_targets_pass_at_the_measured_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert _targets(_rows(1.77))
    out = capsys.readouterr().out
    assert "PASS  c: compressed over the transfer at 115200 >= 1.55x: 1.77x" in out
    assert "FAIL" not in out


@pytest.mark.parametrize(("rate", "small"), [(1.54, 0.033), (1.77, 0.051)])
def test_a_missed_target_fails(
    capsys: pytest.CaptureFixture[str], rate: float, small: float
) -> None:
    assert not _targets(_rows(rate, small))
    assert "FAIL" in capsys.readouterr().out


def test_the_rate_is_over_the_transfer_and_the_command_rate_over_the_whole_command() -> None:
    r = _rows(1.6)[0]
    assert r.rate == pytest.approx(1.6)
    assert r.command_rate == pytest.approx(IMAGE / (r.transfer_s + 0.4) / LINK)
    assert r.idle_s == pytest.approx(r.transfer_s - r.tx / LINK)

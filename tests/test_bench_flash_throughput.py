"""bench.flash_throughput's wire check fails an implementation that beats its line rate."""

from __future__ import annotations

import pytest

from bench.flash_throughput import Run, wire_check


def _run(impl: str, transfer_s: float, size: int = 64 * 1024, baud: int = 115200) -> Run:
    result = {"seconds": transfer_s + 0.5, "transfer_seconds": transfer_s}
    return Run(baud, size, 0, 2.0, {}, result, 0.2, 0.1, transfer_s + 1, impl)


def test_every_impl_below_the_wire_passes(capsys: pytest.CaptureFixture[str]) -> None:
    wire = 64 * 1024 * 10 / 115200  # 5.69 s: efficiency 1.0
    runs = [_run("python", wire / 0.94), _run("c", wire / 0.89), _run("qemu", wire / 0.93)]
    assert wire_check(runs)
    out = capsys.readouterr().out
    assert "qemu    115200 baud,  64 KiB: transfer 0.930" in out
    assert "FASTER" not in out


def test_an_impl_faster_than_the_wire_fails(capsys: pytest.CaptureFixture[str]) -> None:
    wire = 64 * 1024 * 10 / 115200
    runs = [_run("python", wire / 0.94), _run("qemu", wire / 1.92)]
    assert not wire_check(runs)
    out = capsys.readouterr().out
    assert "qemu    115200 baud,  64 KiB: transfer 1.920" in out
    assert "FASTER THAN THE WIRE" in out

"""bench.stm32_phases splits one install's simulator timeline into phases (issue 19)."""

from __future__ import annotations

import pytest

from bench import stm32_phases


def test_a_timeline_splits_into_connect_erase_image_tail_and_host_time() -> None:
    block = "79" + "00" * 256
    events = [
        ["host", 0.000, "7f"],
        ["sim", 0.001, "79"],
        ["host", 0.003, "44bb"],  # Extended Erase: connect ends
        ["sim", 0.004, "79"],
        ["host", 0.005, "0000000000"],
        ["sim", 0.250, "79"],
        ["host", 0.251, "31ce"],  # the first Write Memory: the image starts
        ["sim", 0.252, "79"],
        ["host", 0.253, "11ee"],
        ["sim", 0.254, "79"],
        ["host", 0.255, "fe01"],
        ["sim", 0.300, block],  # the last read-back block: the tail starts
        ["host", 0.302, "21de"],
        ["sim", 0.310, "79"],
    ]
    got = stm32_phases.phases(events)
    assert got["connect"] == pytest.approx(0.003)
    assert got["erase"] == pytest.approx(0.248)
    assert got["image"] == pytest.approx(0.049)
    assert got["tail"] == pytest.approx(0.010)
    assert got["total"] == pytest.approx(0.310)
    # From each answer of the simulator to the host's next bytes: 2+1+1+1+1+2 ms.
    assert got["host"] == pytest.approx(0.008)
    assert got["turns"] == 7

from __future__ import annotations

import pytest

from protocols.mcugw.constants import Opcode
from simulators.mcu.options import FaultSpecError, parse_faults


def test_fault_specs_fold_into_options() -> None:
    opts = parse_faults(
        ["corrupt=0.01:rx", "drop=0.5", "seed=9", "cut-at=50%", "refuse=begin", "mute=VERIFY",
         "crash-on-boot=2.0.0", "cut-phase=activate:2", "delay=5", "baud-fail"]
    )  # fmt: skip
    assert opts.link.corrupt_rx == 0.01
    assert opts.link.corrupt_tx == 0.0
    assert opts.link.drop_rx == opts.link.drop_tx == 0.5
    assert opts.link.seed == 9
    assert opts.cut_at_fraction == 0.5
    assert opts.refuse == {Opcode.BEGIN}
    assert opts.mute == {Opcode.VERIFY}
    assert opts.crash_versions == {"2.0.0"}
    assert opts.cut_phase == ("activate", 2)
    assert opts.extra_delay_s == 0.005
    assert opts.baud_fail


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cut-at=abc%", "not a percentage"),
        ("cut-at=150%", "between 0 and 1"),
        ("corrupt=x", "not a number"),
        ("drop=0.1:up", "rx, tx or both"),
        ("refuse=FLY", "unknown opcode"),
        ("cut-phase=lunch", "phase must be one of"),
        ("warp=9", "unknown fault"),
        ("crash-on-boot=", "needs a version"),
    ],
)
def test_bad_fault_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_faults([spec])

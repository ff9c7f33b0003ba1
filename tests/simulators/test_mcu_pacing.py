"""Every implementation of the MCU paces its UART at --baud and at the rate SET_BAUD picks
(issue 21 item 3): the Python model, the C host build, and the Cortex-M3 build under QEMU,
whose PL011 would otherwise move bytes as fast as the host gives them.

The checks are bounds, not timings: a paced link cannot carry the image faster than
size x 10 bits / baud, whatever the machine's speed; after a SET_BAUD to a rate twelve
times higher the transfer must beat what the old rate could carry; and after a SET_BAUD
that fails, the fallback to the power-on rate paces the transfer again.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from protocols.mcugw.constants import BITS_PER_BYTE
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import McuDriver
from simulators.mcu.models import MODELS
from tests.sim_harness import cli_json, running_sim

IMPLS = ["python", "c", "qemu"]


def _image(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "fw.bin"
    path.write_bytes(random.Random(size).randbytes(size))
    return path


@pytest.mark.parametrize("impl", IMPLS)
def test_a_flash_at_a_low_rate_never_beats_the_wire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    baud, size = 19200, 2_500
    image = _image(tmp_path, size)
    with running_sim(tmp_path / "mcu", "--baud", str(baud), "--model", "vmcu-l0",
                     "--impl", impl) as sim:  # fmt: skip
        t0 = time.monotonic()
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", str(baud), str(image),
            "--version", "2.0.0",
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    assert code == 0, err
    assert result["outcome"] == "confirmed"
    # Each direction's bytes crossed the line within the command (full duplex: the larger).
    wire = max(result["wire_bytes_tx"], result["wire_bytes_rx"]) * BITS_PER_BYTE / baud
    assert elapsed >= wire, (elapsed, wire)
    # Every image byte was sent after the transfer's clock started and acknowledged before
    # it stopped.
    assert result["transfer_seconds"] >= size * BITS_PER_BYTE / baud, result


@pytest.mark.parametrize("impl", IMPLS)
def test_set_baud_paces_the_transfer_at_the_new_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    slow, fast, size = 9600, 115200, 6_000
    image = _image(tmp_path, size)
    with running_sim(tmp_path / "mcu", "--baud", str(slow), "--model", "vmcu-l0",
                     "--impl", impl) as sim:  # fmt: skip
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", str(slow), "--fast-baud", str(fast),
            str(image), "--version", "2.0.0",
        )  # fmt: skip
        assert code == 0, err
        # After the reset that started the new image the part is back at its power-on rate.
        code, info, err = cli_json(capsys, "info", "--port", sim.port, "--baud", str(slow))
        assert code == 0, err
        assert info["running_version"] == "2.0.0"
    seconds = result["transfer_seconds"]
    assert seconds >= size * BITS_PER_BYTE / fast, result  # paced at the new rate ...
    assert seconds < size * BITS_PER_BYTE / slow, result  # ... which it really switched to


@pytest.mark.parametrize("impl", IMPLS)
def test_a_failed_set_baud_falls_back_and_paces_at_the_power_on_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    """`--fault baud-fail`: SET_BAUD is answered but the new rate never works; the part goes
    back to its old rate after 1 s without a frame (§9.5), and so does its pacing."""
    baud, size = 115200, 6_000
    image = _image(tmp_path, size)
    with running_sim(tmp_path / "mcu", "--baud", str(baud), "--model", "vmcu-l0",
                     "--impl", impl, "--fault", "baud-fail") as sim:  # fmt: skip
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", str(baud), "--fast-baud", "921600",
            str(image), "--version", "2.0.0",
        )  # fmt: skip
    assert code == 0, err
    assert result["outcome"] == "confirmed"
    assert result["transfer_seconds"] >= size * BITS_PER_BYTE / baud, result


def test_an_unpaced_link_stays_unpaced_after_set_baud() -> None:
    """`--baud 0` means no pacing at all, after a SET_BAUD too, as in the C builds."""
    model = MODELS["vmcu-l0"]
    for start, after in ((0, 0), (115200, 9600)):
        core = McuCore(model, Flash(model), b"\x01")
        driver = McuDriver(core, start, lambda data: None)
        core.on_baud(9600)  # what an accepted SET_BAUD calls
        assert driver.baud == after

"""`mcu-gateway reset` and `abort` bring the app back after an interrupted flash, per driver."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from protocols import registry
from protocols.driver import DriverOptions, Image, Progress, Step
from protocols.mcuboot.image import build_image
from tests.sim_harness import cli, cli_json, running_sim


class Interrupted(Exception):
    """What Ctrl-C is to the CLI: the host stops in the middle of the transfer."""


def _stop_mid_write(event: Progress) -> None:
    if event.step is Step.WRITE and event.done > 0:
        raise Interrupted


def _interrupted_install(port: str, bootloader: str, image: Image, **extra: Any) -> None:
    async def go() -> None:
        options = DriverOptions(baud=0, extra=extra)
        async with registry.open_driver(port, registry.get(bootloader), options) as driver:
            await driver.install(image, _stop_mid_write)

    with pytest.raises(Interrupted):
        asyncio.run(go())


def _image(data: bytes, version: str) -> Image:
    return Image(data, version, hashlib.sha256(data).hexdigest())


def _states(facts: dict[str, Any]) -> list[str]:
    return [s["state"] for s in facts["slots"]]


def test_mcugw_reset_runs_the_app_and_keeps_the_staged_transfer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sim(tmp_path / "mcu", "--baud", "0", "--flash-scale", "0.05") as sim:
        image = _image(random.Random(1).randbytes(40_000), "2.0.0")
        _interrupted_install(sim.port, "mcugw", image)
        port = ["--port", sim.port, "--baud", "0"]
        code, facts, _ = cli_json(capsys, "info", *port)
        assert (code, facts["mode"]) == (0, "bootloader")  # what Ctrl-C leaves behind
        code, facts, _ = cli_json(capsys, "reset", *port)
        assert code == 0
        assert (facts["mode"], facts["installed_version"]) == ("app", "1.0.0")
        assert _states(facts)[1] == "writing"  # kept: a later flash resumes
        # Interrupted again (it resumed): abort, from the bootloader, drops what was staged.
        _interrupted_install(sim.port, "mcugw", image)
        code, facts, _ = cli_json(capsys, "abort", *port)
        assert code == 0
        assert (facts["mode"], facts["installed_version"]) == ("app", "1.0.0")
        assert _states(facts)[1] != "writing"
        code, out, err = cli(capsys, "reset", *port)
        assert code == 0
        assert out.strip().endswith("running its application, version 1.0.0 (slot 0)"), err


def test_stm32rom_reset_starts_an_intact_app_and_names_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim_args = ("--bootloader", "stm32-rom", "--baud", "0", "--flash-scale", "0.05")
    port_args = ["--bootloader", "stm32-rom", "--baud", "0"]
    enter = {"enter_command": "bootloader\n"}
    with running_sim(tmp_path / "stm32", *sim_args, "--boot0", "high") as sim:
        port = ["--port", sim.port, *port_args, "--driver-opt", "enter_command=bootloader\\n"]
        good = _image(random.Random(2).randbytes(3_000), "1.2.3")

        async def install() -> None:
            options = DriverOptions(baud=0, extra=enter)
            async with registry.open_driver(sim.port, registry.get("stm32-rom"), options) as d:
                assert (await d.install(good)).ok

        asyncio.run(install())
        code, facts, _ = cli_json(capsys, "abort", *port)  # from the bootloader or the app
        assert code == 0
        assert (facts["mode"], facts["installed_version"]) == ("app", "1.2.3")
        # Single-slot: a transfer cut mid-way leaves no app, and reset says so in one line.
        _interrupted_install(sim.port, "stm32-rom", _image(bytes(20_000), "2.0.0"), **enter)
        code, _, err = cli(capsys, "reset", *port)
        assert code == 1
        assert len(err.strip().splitlines()) == 1
        assert err.startswith(f"mcu-gateway reset: error: {sim.port}: "), err
        assert "no verified application to start" in err


def test_mcuboot_abort_drops_the_upload_and_reset_reboots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # commands=full: an app build with os info, so the board reports its hardware id.
    sim_args = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1", "--fault",
                "commands=full")  # fmt: skip
    with running_sim(tmp_path / "mcuboot", *sim_args) as sim:
        data = build_image(random.Random(3).randbytes(30_000), "2.0.0")
        _interrupted_install(sim.port, "mcuboot", _image(data, "2.0.0"))
        port = ["--port", sim.port, "--bootloader", "mcuboot", "--baud", "0"]
        for command in ("reset", "abort"):
            code, facts, err = cli_json(capsys, command, *port)
            assert code == 0, err
            assert (facts["mode"], facts["installed_version"]) == ("app", "1.0.0")
        assert [s["version"] for s in facts["slots"]] == ["1.0.0"]  # nothing staged after abort

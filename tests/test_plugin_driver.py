"""A fourth driver is a package: its entry points alone make sim, the lab and the bench use it.

The plug-in is installed for real (a dist-info directory with entry_points.txt
on the path, which importlib.metadata finds as pip's would be), for this
process and for the simulator processes it starts. It is an STM32 board sold
under another name: its driver is the stm32-rom driver renamed, its simulator
the virtual STM32 with the plug-in's own model name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import driver_compare
from gateway.lab import sim_kind
from protocols import registry
from simulators import registry as simulators

PLUGIN = """
import dataclasses

from protocols.stm32rom.driver import SPEC as STM32
from simulators.mcu.stm32rom.spec import SPEC as STM32_SIM
from simulators.registry import SimModel, SimulatorSpec

DRIVER = dataclasses.replace(STM32, name="acme-bl", summary="ACME sensor bootloader")


def _main(args):
    args.model = {"acme-s1": "stm32f103"}.get(args.model, args.model)
    return STM32_SIM.main(args)


SIM = SimulatorSpec(
    name="acme-bl",
    summary="a virtual ACME sensor",
    main=_main,
    sim_args=STM32_SIM.sim_args,
    driver_options=STM32_SIM.driver_options,
    models={"acme-s1": SimModel("acme", "stm32f10x-md")},
)
"""

ENTRY_POINTS = """
[mcu_gateway.drivers]
acme-bl = acme_plugin:DRIVER

[mcu_gateway.simulators]
acme-bl = acme_plugin:SIM
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    info = site / "acme_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "acme_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{path}" if path else str(site))


@pytest.mark.usefixtures("plugin")
def test_the_plugin_is_found_by_name_for_sim_and_the_lab() -> None:
    assert "acme-bl" in registry.names()
    assert "acme-bl" in simulators.names()
    kind = sim_kind("acme-s1")
    assert (kind.bootloader, kind.manufacturer, kind.device_model) == (
        "acme-bl", "acme", "stm32f10x-md")  # fmt: skip
    assert kind.sim_args[:2] == ("--bootloader", "acme-bl")
    assert dict(kind.port_options) == {"enter_command": "bootloader\n"}


@pytest.mark.usefixtures("plugin")
def test_the_bench_runs_the_plugin_through_sim_bootloader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    code = driver_compare.main(
        ["--drivers", "acme-bl", "--bauds", "921600", "--size", "4K", "--json", str(out)]
    )
    assert code == 0, capsys.readouterr()
    (row,) = json.loads(out.read_text())
    assert (row["driver"], row["status"], row["outcome"]) == ("acme-bl", "ok", "confirmed")

"""The virtual MCUboot/Zephyr board as a :class:`~simulators.registry.SimulatorSpec`."""

from __future__ import annotations

import argparse

from simulators.registry import SimModel, SimulatorSpec


def _main(args: argparse.Namespace) -> int:
    from simulators.mcu.mcuboot.cli import run

    return run(args)


def _image(payload: bytes, version: str) -> bytes:
    from protocols.mcuboot.image import build_image

    return build_image(payload, version)


SPEC = SimulatorSpec(
    name="mcuboot",
    summary="a Zephyr app with MCUboot, serving SMP on its console",
    main=_main,
    # The tools' board runs an app built with the os info hardware-id hook and mcumgr
    # params, so every board names its own uid; the simulator's own default is the
    # stock smp_svr command set (docs/bootloaders-mcuboot.md, "Stock Zephyr").
    sim_args=("--fault", "commands=full"),
    make_image=_image,
    models={"vmcu_nrf52840": SimModel("zephyr", "vmcu_nrf52840")},
)

"""The virtual STM32 as a :class:`~simulators.registry.SimulatorSpec` (imports nothing heavy)."""

from __future__ import annotations

import argparse

from simulators.registry import SimModel, SimulatorSpec


def _main(args: argparse.Namespace) -> int:
    from simulators.mcu.stm32rom.serve import main

    return main(args)


SPEC = SimulatorSpec(
    name="stm32-rom",
    summary="an STM32 F1/F4 whose ROM system bootloader speaks AN3155",
    main=_main,
    # The ROM loader at every reset (BOOT0 strapped high); the app it starts leaves for
    # the loader on the simulator's documented enter command (a pty has no modem lines).
    sim_args=("--boot0", "high"),
    driver_options={"enter_command": "bootloader\n"},
    models={
        "stm32f103": SimModel("st", "stm32f10x-md"),
        "stm32f407": SimModel("st", "stm32f40x"),
    },
)

"""Run the stm32loader command line against the simulator's pseudo-terminal.

    python -m simulators.mcu.stm32rom.stm32loader_pty -p /dev/pts/N -f F1 -P none -e -w -v app.bin

stm32loader toggles DTR and RTS (its RESET and BOOT0 wiring) around every
session, and a pty has no modem lines: Linux answers those ioctls with ENOTTY
and the tool stops. This wrapper makes just those two toggles no-ops (the
simulated board has BOOT0 strapped with ``--boot0 high``) and otherwise runs
stm32loader's own ``main`` with the given arguments. Needs the ``dev`` extra.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from stm32loader import main as loader_main
    from stm32loader.uart import SerialConnection

    def no_line(self: object, enable: bool = True) -> None:
        """A pty has no DTR/RTS; BOOT0 is strapped on the simulated board."""

    saved = SerialConnection.enable_reset, SerialConnection.enable_boot0
    SerialConnection.enable_reset = SerialConnection.enable_boot0 = no_line
    try:
        loader_main.main(*argv)
    finally:
        SerialConnection.enable_reset, SerialConnection.enable_boot0 = saved


if __name__ == "__main__":
    main(sys.argv[1:])

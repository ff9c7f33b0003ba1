"""A virtual STM32 (F1 or F4) whose ROM system bootloader speaks AN3155 on a pty.

``mcu-gateway sim --pty --bootloader stm32-rom [--boot0 high|low]`` runs it;
:func:`simulators.mcu.stm32rom.serve.main` is that command.
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from simulators.mcu.stm32rom.serve import main as serve_main

    return serve_main(args)

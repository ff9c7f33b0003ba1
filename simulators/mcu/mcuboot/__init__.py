"""A Zephyr-like application with MCUboot, answering SMP on a pseudo-terminal.

:mod:`.flash` holds the slots of one or two images in a state-dir file under NOR
rules, :mod:`.boot` is MCUboot (swap-using-move with a resumable status area),
:mod:`.validate` its image and signature checks, :mod:`.server` the application's
SMP server (stock or full command set), :mod:`.recovery` MCUboot's serial
recovery, :mod:`.device` ties them to time (boot, swap steps, self-confirm, crash,
reset) and :mod:`.serve` paces the link on a pty. ``mcu-gateway sim --pty
--bootloader mcuboot`` runs it.
"""

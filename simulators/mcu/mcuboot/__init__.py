"""A Zephyr-like application with MCUboot, answering SMP on a pseudo-terminal.

:mod:`.flash` holds the two slots in a state-dir file, :mod:`.boot` is MCUboot
(swap with revert), :mod:`.server` the application's SMP server, :mod:`.device`
ties them to time (boot, self-confirm, crash, reset) and :mod:`.serve` paces the
link on a pty. ``mcu-gateway sim --pty --bootloader mcuboot`` runs it.
"""

"""The virtual MCU: flash model, A/B slot trailer, bootloader+app core, pty runner."""

"""Simulators: virtual MCU, IoT Hub/DPS emulator, test image server."""

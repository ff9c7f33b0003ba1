"""Firmware packages: manifest, signatures, policy, download and cache."""

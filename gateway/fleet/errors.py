"""The fleet package's one exception: a one-line message the CLI prints as is."""

from __future__ import annotations


class FleetError(Exception):
    """A refused operation or bad input; nothing was changed half-way."""


class HubRefused(FleetError):
    """IoT Hub answered an HTTP error; ``status`` says which (409 exists, 412 stale etag)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class UntrustedHub(FleetError):
    """IoT Hub's TLS certificate does not chain to a trusted CA; waiting will not help."""

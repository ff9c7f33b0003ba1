"""Errors only this project's protocol (mcugw) raises: refusals, versions, hashes."""

from __future__ import annotations

from protocols.errors import RemoteProtocolError
from protocols.mcugw.constants import Status


class UnsupportedVersionError(RemoteProtocolError):
    """The peer speaks a protocol version outside the range we implement."""

    def __init__(self, theirs: int, lowest: int, highest: int) -> None:
        super().__init__(
            f"bootloader speaks protocol version {theirs}; "
            f"this gateway supports versions {lowest}..{highest}"
        )
        self.theirs = theirs


class DeviceRejected(RemoteProtocolError):
    """The MCU answered a request with a non-OK status."""

    def __init__(self, what: str, status: Status, detail: str = "") -> None:
        text = f"{what} refused by MCU: {status.name} ({status.describe()})"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.status = status


class VerifyFailed(RemoteProtocolError):
    """The MCU hashed the staged slot and the SHA-256 did not match."""

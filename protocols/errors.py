"""Exception hierarchy for the serial bootloader protocol.

One root, split by origin: local (our side misbehaved or gave up), remote (the
MCU said no), and link (bytes on the wire were bad or stopped).
"""

from __future__ import annotations

from protocols.constants import Status


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocols`."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that violates the protocol."""


class FrameError(RemoteProtocolError):
    """A frame could not be decoded (bad COBS, too short, unknown layout)."""


class CrcError(FrameError):
    """A frame's CRC-32 did not match: the bytes were damaged on the link."""


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


class TransportError(ProtocolError):
    """The link itself failed."""


class PortNotFound(TransportError):
    """The serial port does not exist or cannot be opened."""


class TransportDisconnected(TransportError):
    """The port went away while in use (unplugged, peer exited)."""


class DeviceTimeout(ProtocolError, TimeoutError):
    """No valid answer from the MCU before the derived deadline."""

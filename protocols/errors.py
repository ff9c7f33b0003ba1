"""Exception hierarchy shared by every bootloader protocol and the transports.

One root, split by origin: local (our side misbehaved or gave up), remote (the
MCU said no), and link (bytes on the wire were bad or stopped).
"""

from __future__ import annotations


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


class TransportError(ProtocolError):
    """The link itself failed."""


class PortNotFound(TransportError):
    """The serial port does not exist or cannot be opened."""


class TransportDisconnected(TransportError):
    """The port went away while in use (unplugged, peer exited)."""


class DeviceTimeout(ProtocolError, TimeoutError):
    """No valid answer from the MCU before the derived deadline."""

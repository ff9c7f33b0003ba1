"""Exceptions of the SMP/MCUboot codec and client, split by origin.

The driver maps each to a twin ``error.code`` in one place
(:func:`protocols.mcuboot.driver.error_code`).
"""

from __future__ import annotations


class SmpError(Exception):
    """Root of every error raised by :mod:`protocols.mcuboot`."""


class ImageError(SmpError):
    """The bytes are not an MCUboot image we can install (local: nothing was sent)."""


class FrameError(SmpError):
    """A console frame could not be decoded (bad base64, length or delimiter)."""


class CrcError(FrameError):
    """A frame's CRC16 did not match: bytes were damaged on the link."""


class SmpProtocolError(SmpError):
    """The device answered something SMP does not allow here."""


class SequenceError(SmpProtocolError):
    """An answer carried a sequence number we never sent: an answer to another request."""


class SmpRejected(SmpError):
    """The device answered with an SMP error (``rc``, or ``err.group``/``err.rc``)."""

    def __init__(
        self, what: str, rc: int, name: str, group: int | None = None, rsn: str = ""
    ) -> None:
        where = "" if group is None else f" (group {group})"
        text = f"{what} refused by the device: {name} rc={rc}{where}"
        super().__init__(f"{text}: {rsn}" if rsn else text)
        self.rc = rc
        self.name = name
        self.group = group


class SmpTimeout(SmpError, TimeoutError):
    """No valid answer within the time the link rate and device timing allow."""


class VerifyError(SmpError):
    """What the device holds is not what was sent (hash, version or slot state)."""

"""The one exception root of ``firmware``, split by origin.

Every error carries a :class:`ReasonCode`, so callers report ``exc.reason``
(and decide on ``exc.kind``) without mapping exception types themselves.
"""

from __future__ import annotations

from firmware.reasons import ReasonCode
from protocols.failures import Kind


class FirmwareError(Exception):
    """Root of everything ``firmware`` raises on purpose."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def kind(self) -> Kind:
        """What sort of failure this is; the gateway retries by it (protocols.failures)."""
        return self.reason.kind

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


class DesiredFirmwareError(FirmwareError):
    """The desired twin section is malformed; ``field`` names the offending key."""

    def __init__(self, reason: ReasonCode, field: str, message: str) -> None:
        super().__init__(reason, message)
        self.field = field


class PackageError(FirmwareError):
    """The package file is structurally bad or fails its own integrity checks."""


class VerificationError(FirmwareError):
    """The package is well formed but refused by trust or target policy."""


class KeyFileError(FirmwareError):
    """A key file cannot be read or is of an unsupported algorithm."""


class DownloadError(FirmwareError):
    """Fetching a package failed; nothing was left in the cache."""


class DownloadTimeout(DownloadError, TimeoutError):
    """The overall download deadline passed."""


class CacheError(FirmwareError):
    """The content-addressed cache could not store or find a file."""

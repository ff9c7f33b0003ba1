"""The one exception root of ``gateway``, split by origin.

Callers catch :class:`GatewayError` at the process boundary and the specific
subclass where they can do something about it (re-register after
:class:`CloudAuthError`, retry after :class:`CloudTimeout`). SDK exceptions
never escape ``gateway.cloud`` or ``gateway.identity``: they are translated
here with ``raise ... from exc`` so the cause stays in tracebacks.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of everything ``gateway`` raises on purpose."""


class ConfigError(GatewayError):
    """The configuration file is missing, malformed or refers to something unusable.

    ``file`` and ``key`` (dotted, e.g. ``hub.id_scope``) say where; the message
    says what was expected. Secret values are never part of it.
    """

    def __init__(self, file: str, key: str | None, message: str) -> None:
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.key = key
        self.message = message


class JournalError(GatewayError):
    """The SQLite journal could not be opened, migrated or written."""


class JournalFull(JournalError):
    """The journal's file system is full (or failing to write); ``free`` bytes remain."""

    def __init__(self, message: str, free: int) -> None:
        super().__init__(message)
        self.free = free


class IdentityError(GatewayError):
    """A device identity could not be provisioned, created or looked up."""


class CloudError(GatewayError):
    """Talking to IoT Hub failed; the device id is part of the message."""


class CloudAuthError(CloudError, IdentityError):
    """The hub or DPS refused the credentials (CONNACK 5, 401): re-provision, don't retry."""


class CloudTimeout(CloudError, TimeoutError):
    """A bounded wait on the SDK ran out; the operation may still complete later."""


class CloudDisconnected(CloudError):
    """The link is closed or not connected, so the operation was not attempted."""

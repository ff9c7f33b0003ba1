"""The emulator's one exception root, split by where the failure comes from."""

from __future__ import annotations

from http import HTTPStatus


class HubEmulatorError(Exception):
    """Root of every error raised by the IoT Hub / DPS emulator."""


class MalformedPacket(HubEmulatorError):
    """A client sent bytes that are not valid MQTT 3.1.1; the connection is closed."""


class AuthError(HubEmulatorError):
    """Credentials were refused (bad signature, expired token, unknown identity)."""


class StartupError(HubEmulatorError):
    """The emulator could not start (address in use, unreadable state directory, ...)."""


class RequestError(HubEmulatorError):
    """An operation was refused with an HTTP-like status, as IoT Hub would answer it.

    The same status goes out on a REST response or on an MQTT twin response topic.
    """

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, status: HTTPStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(RequestError):
    status = HTTPStatus.BAD_REQUEST


class NotFound(RequestError):
    status = HTTPStatus.NOT_FOUND


class Conflict(RequestError):
    status = HTTPStatus.CONFLICT


class PreconditionFailed(RequestError):
    status = HTTPStatus.PRECONDITION_FAILED


class TooLarge(RequestError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

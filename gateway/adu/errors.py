"""What ``gateway.adu`` raises: one root, each error with its ADU extended result code.

The ``erc`` goes into ``lastInstallResult.extendedResultCodes`` as ADU's agent
reports it (8 upper-case hex digits), so an operator can look it up in
Microsoft's table (src/inc/aduc/result.h of Azure/iot-hub-device-update).
"""

from __future__ import annotations

from gateway.errors import GatewayError


class AduError(GatewayError):
    """Root of the ADU errors; ``erc`` is the extended result code to report."""

    def __init__(self, message: str, erc: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.erc = erc


class AduVerifyError(AduError):
    """The ``deviceUpdate.service`` value's signature chain or manifest hash does not verify."""

    def __init__(self, message: str, erc: int = 0, jws_result: int | None = None) -> None:
        super().__init__(message, erc)
        self.jws_result = jws_result  # a codes.JwsResult when the chain itself failed


class AduManifestError(AduError):
    """The update manifest is malformed, or asks for something this agent cannot do."""


class RootKeyPackageError(AduError):
    """A root key package is malformed or not signed by every built-in root key."""

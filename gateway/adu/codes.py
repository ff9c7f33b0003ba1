"""ADU's numbers: agent states, workflow actions, result codes, extended result codes.

Every value is Microsoft's, from the reference agent (github Azure/iot-hub-device-update
at b96895bb): states and actions from src/adu_types/inc/aduc/types/update_content.h,
result codes from src/adu_types/inc/aduc/types/adu_core.h, extended result codes (ERCs)
from src/inc/aduc/result.h, JWS results from src/utils/jws_utils/inc/jws_utils.h.

``FAILURES`` is the one table from this project's failure codes (the twin's
``firmware.error.code``: :class:`firmware.reasons.ReasonCode` values and the drivers'
codes) to the ERC reported in ``lastInstallResult.extendedResultCodes``; docs/adu.md
lists it for operators (``tests/gateway/test_adu_codes.py`` keeps the two in step).
"""

from __future__ import annotations

from enum import IntEnum

from firmware.reasons import ReasonCode


class AgentState(IntEnum):
    """``deviceUpdate.agent.state`` (ADUCITF_State)."""

    IDLE = 0  # no deployment running; also the state that reports success
    DEPLOYMENT_IN_PROGRESS = 6  # a ProcessDeployment action was accepted and runs
    FAILED = 255  # the last deployment failed; lastInstallResult says why


class Action(IntEnum):
    """``deviceUpdate.service.workflow.action`` (ADUCITF_UpdateAction)."""

    PROCESS_DEPLOYMENT = 3  # download, install and apply the update in updateManifest
    CANCEL = 255  # stop the running deployment


class ResultCode(IntEnum):
    """``lastInstallResult.resultCode`` (ADUC_ResultCode); 0 is a failure."""

    FAILURE = 0  # failed; extendedResultCodes says why
    FAILURE_CANCELLED = -1  # failed because of a Cancel action
    DEPLOYMENT_IN_PROGRESS_SUCCESS = 400  # ProcessDeployment acknowledged
    APPLY_SUCCESS = 700  # the update is installed and running
    CANCEL_SUCCESS = 800  # a Cancel with nothing to cancel, or a finished cancel
    INSTALL_SKIPPED_ALREADY_INSTALLED = 603  # installedCriteria was already met


class JwsResult(IntEnum):
    """Why a signature chain did not verify (JWSResult); packed into an ERC."""

    FAILED = 0  # undecodable header or payload
    SUCCESS = 1
    BAD_STRUCTURE = 2  # not header.payload.signature, or no sjwk/alg
    INVALID_SIGNATURE = 4  # a signature does not verify (or an alg other than RS256)
    DISALLOWED_ROOT_KID = 5  # the root key is disabled by the root key package
    MISSING_ROOT_KID = 6  # no root key with that kid
    INVALID_ROOT_KID = 7  # the root key could not be used
    INVALID_ENCODING_JWS_HEADER = 8  # the JWS header is not base64url JSON
    INVALID_SJWK_PAYLOAD = 9  # the signing key is not an RSA JWK with e=AQAB
    DISALLOWED_SIGNING_KEY = 10  # the signing key is disabled by the root key package


def make_erc(facility: int, component: int, value: int) -> int:
    """MAKE_ADUC_EXTENDEDRESULTCODE: facility (4 bits), component (8), value (20)."""
    return ((facility & 0xF) << 28) | ((component & 0xFF) << 20) | (value & 0xFFFFF)


def erc_hex(erc: int) -> str:
    """The reported spelling: 8 upper-case hex digits (reporting_utils.c, "%08X")."""
    return f"{erc & 0xFFFFFFFF:08X}"


def jws_erc(result: JwsResult) -> int:
    """FACILITY_INFRA_MGMT (10), COMPONENT_JWS_UPDATE_MANIFEST_VALIDATION (2), the JWSResult."""
    if result is JwsResult.DISALLOWED_SIGNING_KEY:
        return ERC_ROOTKEY_SIGNING_KEY_IS_DISABLED  # workflow_utils.c reports this one apart
    return make_erc(10, 2, int(result))


# Extended result codes of the reference agent that this agent reports (result.h).
ERC_MANIFEST_VALIDATION_FAILED = 0x80300001  # UPDATE_DATA_PARSER_MANIFEST_VALIDATION_FAILED
ERC_BAD_UPDATE_MANIFEST = 0x80300009  # UPDATE_DATA_PARSER_BAD_UPDATE_MANIFEST
ERC_UNSUPPORTED_MANIFEST_VERSION = 0x8030000A  # ..._UNSUPPORTED_UPDATE_MANIFEST_VERSION
ERC_BAD_FILES_OR_FILEURLS = 0x80300007  # UPDATE_DATA_PARSER_BAD_FILES_OR_FILEURLS
ERC_NO_INSTALLEDCRITERIA = 0x80300006  # UPDATE_DATA_PARSER_NO_INSTALLEDCRITERIA
ERC_HANDLER_NOT_FOUND = 0x30000003  # UPDATE_CONTENT_HANDLER_CREATE_FAILURE_NOT_FOUND
ERC_STEP_COMPATIBILITY_FAILED = 0x30400007  # STEPS_HANDLER_GET_STEP_COMPATIBILITY_FAILED
ERC_ROOTKEY_SIGNING_KEY_IS_DISABLED = 0xA0000005  # ROOTKEY_SIGNING_KEY_IS_DISABLED
ERC_ROOTKEY_PROD_PKG_ON_TEST_AGENT = 0xA0000006  # ROOTKEY_PROD_PKG_ON_TEST_AGENT
ERC_ROOTKEY_TEST_PKG_ON_PROD_AGENT = 0xA0000007  # ROOTKEY_TEST_PKG_ON_PROD_AGENT
ERC_ROOTKEY_PKG_FAIL_JSON_PARSE = 0xA0000001  # ROOTKEY_PKG_FAIL_JSON_PARSE
ERC_ROOTKEY_SIGNATURE_FOR_KEY_NOT_FOUND = 0x80600003  # ROOTKEYUTIL_SIGNATURE_FOR_KEY_NOT_FOUND
ERC_ROOTKEY_SIGNATURE_VALIDATION_FAILED = 0x80600004  # ROOTKEYUTIL_SIGNATURE_VALIDATION_FAILED
ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH = 0x4000000C  # CONTENT_DOWNLOADER_INVALID_FILE_HASH
ERC_CONTENT_DOWNLOADER_EXCEPTION = 0x40000005  # CONTENT_DOWNLOADER_DOWNLOAD_EXCEPTION
ERC_CONTENT_DOWNLOADER_INVALID_URI = 0x40000007  # CONTENT_DOWNLOADER_INVALID_DOWNLOAD_URI

#: This agent's own ERCs for failures Microsoft's table has no entry for: facility 3
#: (update content handler), component 0xFE (unused by Microsoft), value = row below.
_OWN = 0xFE


def _own(value: int) -> int:
    return make_erc(3, _OWN, value)


_R = ReasonCode
#: Project failure code -> ADU extended result code. Microsoft's code where one fits.
FAILURES: dict[str, int] = {
    # Download: the file ADU pointed at.
    _R.URL_REFUSED.value: ERC_CONTENT_DOWNLOADER_INVALID_URI,
    _R.PACKAGE_NOT_FOUND.value: ERC_CONTENT_DOWNLOADER_EXCEPTION,
    _R.DOWNLOAD_FAILED.value: ERC_CONTENT_DOWNLOADER_EXCEPTION,
    _R.DOWNLOAD_TIMEOUT.value: ERC_CONTENT_DOWNLOADER_EXCEPTION,
    _R.DOWNLOAD_TOO_LARGE.value: ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH,
    _R.DOWNLOAD_SIZE_MISMATCH.value: ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH,
    _R.DOWNLOAD_HASH_MISMATCH.value: ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH,
    _R.CACHE_ERROR.value: _own(0x01),
    # Our package inside the ADU file (its own signature is still enforced).
    _R.TRUNCATED.value: _own(0x10),
    _R.MALFORMED.value: _own(0x11),
    _R.UNSUPPORTED_FORMAT.value: _own(0x12),
    _R.MANIFEST_INVALID.value: _own(0x13),
    _R.PAYLOAD_HASH_MISMATCH.value: _own(0x14),
    _R.UNSIGNED.value: _own(0x15),
    _R.UNTRUSTED_KEY.value: _own(0x16),
    _R.SIGNATURE_INVALID.value: _own(0x17),
    _R.CHECK_VALUE_MISMATCH.value: _own(0x18),
    _R.SIZE_MISMATCH.value: _own(0x19),
    _R.TOO_LARGE.value: _own(0x1A),
    _R.VERSION_MISMATCH.value: _own(0x1B),
    _R.TARGET_INVALID.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.INCOMPATIBLE_MANUFACTURER.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.INCOMPATIBLE_MODEL.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.INCOMPATIBLE_HWREV.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.DOWNGRADE.value: _own(0x1C),
    _R.BELOW_MINIMUM_VERSION.value: _own(0x1D),
    _R.DELTA_UNSUPPORTED.value: _own(0x1E),
    _R.DELTA_BASE_MISMATCH.value: _own(0x1F),
    _R.KEY_INVALID.value: _own(0x20),
    # The MCU and its bootloader (gateway.update and the drivers).
    "ROLLED_BACK": _own(0x30),  # the new app did not confirm; the old one runs again
    "APP_NOT_CONFIRMED": _own(0x31),  # neither confirmed nor rolled back in time
    "ABORTED": _own(0x32),  # the update was stopped (cancel, unplug)
    "INTERNAL_ERROR": _own(0x3F),  # a gateway bug; the log has the traceback
}
#: A driver's failure code that is not in the table (the bootloader's own codes).
ERC_DRIVER_OTHER = _own(0x40)


def erc_for(code: str) -> int:
    """The ERC for a project failure code; a driver's own codes share one."""
    return FAILURES.get(code, ERC_DRIVER_OTHER)

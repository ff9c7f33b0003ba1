"""ADU's numbers: agent states, workflow actions, result codes, extended result codes.

Every value is Microsoft's, from the reference agent (github Azure/iot-hub-device-update
at b96895bb): states and actions from src/adu_types/inc/aduc/types/update_content.h,
result codes from src/adu_types/inc/aduc/types/adu_core.h, extended result codes (ERCs)
from src/inc/aduc/result.h, JWS results from src/utils/jws_utils/inc/jws_utils.h.

:func:`erc_for` is the one mapping from this project's failure codes (the twin's
``firmware.error.code``, each with a :class:`protocols.failures.Kind`) to the ERC
reported in ``lastInstallResult.extendedResultCodes``: Microsoft's own ERC where its
table names the same failure, else one ERC per kind. docs/adu.md lists both tables
for operators (``tests/gateway/test_adu_codes.py`` keeps docs and code in step).
"""

from __future__ import annotations

from enum import IntEnum

from firmware.reasons import ReasonCode
from gateway.codes import kind_of
from protocols.failures import Kind


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
    IDLE_SUCCESS = 200  # Idle after a Cancel with nothing to cancel (agent_workflow.c)
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

#: This agent's own ERCs: facility 3 (update content handler), component 0xFE (unused by
#: Microsoft's agent), value = the failure's kind (:class:`protocols.failures.Kind`) below.
OWN_COMPONENT = 0xFE
KIND_VALUES: dict[Kind, int] = {
    Kind.LINK: 0x01,
    Kind.TIMEOUT: 0x02,
    Kind.DISCONNECTED: 0x03,
    Kind.BUSY: 0x04,
    Kind.NETWORK: 0x05,
    Kind.STORAGE: 0x06,
    Kind.UNCONFIRMED: 0x07,
    Kind.ABSENT: 0x08,
    Kind.REFUSED: 0x09,
    Kind.PROTECTED: 0x0A,
    Kind.UNSUPPORTED: 0x0B,
    Kind.DEVICE: 0x0C,
    Kind.BOOT: 0x0D,
    Kind.IMAGE: 0x0E,
    Kind.DELTA: 0x0F,
    Kind.TRUST: 0x10,
    Kind.TARGET: 0x11,
    Kind.DESIRED: 0x12,
    Kind.SOURCE: 0x13,
    Kind.CONFIG: 0x14,
    Kind.ABORTED: 0x15,
    Kind.INTERNAL: 0x16,
}


def kind_erc(kind: Kind) -> int:
    return make_erc(3, OWN_COMPONENT, KIND_VALUES[kind])


_R = ReasonCode
#: Failure codes Microsoft's table names exactly: their ERC wins over the kind's.
MICROSOFT: dict[str, int] = {
    _R.URL_REFUSED.value: ERC_CONTENT_DOWNLOADER_INVALID_URI,
    _R.DOWNLOAD_SIZE_MISMATCH.value: ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH,
    _R.DOWNLOAD_HASH_MISMATCH.value: ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH,
    _R.INCOMPATIBLE_MANUFACTURER.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.INCOMPATIBLE_MODEL.value: ERC_STEP_COMPATIBILITY_FAILED,
    _R.INCOMPATIBLE_HWREV.value: ERC_STEP_COMPATIBILITY_FAILED,
}


def erc_for(code: str) -> int:
    """The one mapping from a failure code (twin ``error.code``) to an ADU extended result code.

    Microsoft's ERC where its table has the same failure, else this agent's ERC for
    the code's kind; a code no table declares counts as an internal error.
    """
    exact = MICROSOFT.get(str(code))
    if exact is not None:
        return exact
    kind = kind_of(str(code))
    return kind_erc(kind if kind is not None and kind in KIND_VALUES else Kind.INTERNAL)


def kind_of_erc(erc: int) -> Kind | None:
    """The kind behind one of this agent's own ERCs (for docs and ``adu status``)."""
    if (erc >> 28) & 0xF != 3 or (erc >> 20) & 0xFF != OWN_COMPONENT:
        return None
    for kind, value in KIND_VALUES.items():
        if value == erc & 0xFFFFF:
            return kind
    return None


def markdown_tables() -> str:
    """The result-code tables of docs/adu.md, rendered from the mapping above."""
    lines = ["| ERC | failure code | meaning |", "|---|---|---|"]
    for code, erc in MICROSOFT.items():
        lines.append(f"| `{erc_hex(erc)}` | `{code}` | Microsoft's code for this failure |")
    lines += ["", "| ERC | kind | meaning |", "|---|---|---|"]
    for kind in KIND_VALUES:
        lines.append(f"| `{erc_hex(kind_erc(kind))}` | {kind.value} | {kind.meaning} |")
    return "\n".join(lines) + "\n"

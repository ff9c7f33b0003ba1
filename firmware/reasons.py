"""Reason codes: the stable, machine-readable cause of every refusal.

The gateway reports ``code.value`` as ``properties.reported.firmware.error.code``,
so values are part of the twin contract: add members, never rename them. Each
has a :class:`~protocols.failures.Kind` that decides whether the gateway tries
again by itself (see :mod:`protocols.failures`).
"""

from __future__ import annotations

from protocols.failures import Code, Kind


class ReasonCode(Code):
    """firmware (packages, verification, downloads)"""

    OK = "OK", Kind.NONE, "every check passed"

    # Desired twin properties (properties.desired.firmware).
    DESIRED_NOT_OBJECT = (
        "DESIRED_NOT_OBJECT",
        Kind.DESIRED,
        "the firmware section is not a JSON object",
    )
    DESIRED_MISSING_FIELD = (
        "DESIRED_MISSING_FIELD",
        Kind.DESIRED,
        "a required field is absent or null",
    )
    DESIRED_WRONG_TYPE = "DESIRED_WRONG_TYPE", Kind.DESIRED, "a field has the wrong JSON type"
    DESIRED_STRING_TOO_LONG = (
        "DESIRED_STRING_TOO_LONG",
        Kind.DESIRED,
        "a string exceeds its length limit",
    )
    DESIRED_BAD_VERSION = "DESIRED_BAD_VERSION", Kind.DESIRED, "fwVersion is not a semantic version"
    DESIRED_BAD_URI = "DESIRED_BAD_URI", Kind.DESIRED, "fwPackageURI does not parse or has no host"
    DESIRED_BAD_URI_SCHEME = (
        "DESIRED_BAD_URI_SCHEME",
        Kind.DESIRED,
        "fwPackageURI scheme is not allowed",
    )
    DESIRED_BAD_CHECK_VALUE = (
        "DESIRED_BAD_CHECK_VALUE",
        Kind.DESIRED,
        "fwPackageCheckValue is not SHA-256 hex",
    )
    DESIRED_BAD_SIZE = "DESIRED_BAD_SIZE", Kind.DESIRED, "fwPackageSize is not a positive integer"
    DESIRED_BAD_WINDOW = "DESIRED_BAD_WINDOW", Kind.DESIRED, "installWindow is not {start, end, tz}"

    # Package file structure.
    TRUNCATED = "TRUNCATED", Kind.IMAGE, "the file ends before its declared contents"
    MALFORMED = "MALFORMED", Kind.IMAGE, "bad magic, bad header fields or trailing bytes"
    UNSUPPORTED_FORMAT = (
        "UNSUPPORTED_FORMAT",
        Kind.IMAGE,
        "a format version this code does not know",
    )
    MANIFEST_INVALID = (
        "MANIFEST_INVALID",
        Kind.IMAGE,
        "manifest is not canonical JSON of the v1 schema",
    )
    PAYLOAD_HASH_MISMATCH = (
        "PAYLOAD_HASH_MISMATCH",
        Kind.IMAGE,
        "payload bytes differ from manifest SHA-256",
    )

    # Signature and trust.
    UNSIGNED = "UNSIGNED", Kind.TRUST, "no signature and the policy requires one"
    UNTRUSTED_KEY = "UNTRUSTED_KEY", Kind.TRUST, "signed by a key that is not a trust anchor"
    SIGNATURE_INVALID = (
        "SIGNATURE_INVALID",
        Kind.TRUST,
        "signature does not verify over the manifest",
    )

    # Against the twin and the target MCU.
    CHECK_VALUE_MISMATCH = (
        "CHECK_VALUE_MISMATCH",
        Kind.SOURCE,
        "package SHA-256 != fwPackageCheckValue",
    )
    SIZE_MISMATCH = "SIZE_MISMATCH", Kind.SOURCE, "package length != fwPackageSize"
    TOO_LARGE = (
        "TOO_LARGE",
        Kind.TARGET,
        "package or payload exceeds the configured cap or the slot",
    )
    VERSION_MISMATCH = "VERSION_MISMATCH", Kind.TARGET, "manifest version != fwVersion"
    TARGET_INVALID = "TARGET_INVALID", Kind.TARGET, "the MCU's compatibility string is malformed"
    INCOMPATIBLE_MANUFACTURER = (
        "INCOMPATIBLE_MANUFACTURER",
        Kind.TARGET,
        "built for another manufacturer",
    )
    INCOMPATIBLE_MODEL = "INCOMPATIBLE_MODEL", Kind.TARGET, "built for another MCU model"
    INCOMPATIBLE_HWREV = "INCOMPATIBLE_HWREV", Kind.TARGET, "built for another hardware revision"
    DOWNGRADE = "DOWNGRADE", Kind.TARGET, "older than installed and allowDowngrade is false"
    BELOW_MINIMUM_VERSION = (
        "BELOW_MINIMUM_VERSION",
        Kind.TARGET,
        "installed version < manifest minimum",
    )
    DELTA_UNSUPPORTED = (
        "DELTA_UNSUPPORTED",
        Kind.DELTA,
        "a delta package for an MCU that cannot apply one",
    )
    DELTA_BASE_MISMATCH = (
        "DELTA_BASE_MISMATCH",
        Kind.DELTA,
        "a delta whose base is not what the MCU runs",
    )

    # Download and cache.
    URL_REFUSED = (
        "URL_REFUSED",
        Kind.SOURCE,
        "scheme not allowed (file://, or http:// unless configured)",
    )
    PACKAGE_NOT_FOUND = "PACKAGE_NOT_FOUND", Kind.SOURCE, "the server answered 404 or 410"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED", Kind.NETWORK, "other HTTP error, or retries exhausted"
    DOWNLOAD_TIMEOUT = "DOWNLOAD_TIMEOUT", Kind.TIMEOUT, "the overall deadline passed"
    DOWNLOAD_TOO_LARGE = "DOWNLOAD_TOO_LARGE", Kind.TARGET, "the response exceeded the size cap"
    DOWNLOAD_SIZE_MISMATCH = (
        "DOWNLOAD_SIZE_MISMATCH",
        Kind.SOURCE,
        "length differs from fwPackageSize",
    )
    DOWNLOAD_HASH_MISMATCH = (
        "DOWNLOAD_HASH_MISMATCH",
        Kind.SOURCE,
        "downloaded bytes differ from check value",
    )
    CACHE_ERROR = "CACHE_ERROR", Kind.STORAGE, "the cache directory could not be written"
    STORAGE_FULL = (
        "STORAGE_FULL",
        Kind.STORAGE,
        "the gateway's disk is too full for the package or the journal (free, needed bytes)",
    )
    DOWNLOAD_UNTRUSTED = (
        "DOWNLOAD_UNTRUSTED",
        Kind.TRUST,
        ("the server's TLS certificate does not verify against the configured CA"),
    )

    # Keys.
    KEY_INVALID = "KEY_INVALID", Kind.CONFIG, "a key file is unreadable or of an unsupported type"

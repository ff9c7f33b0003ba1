"""Reason codes: the stable, machine-readable cause of every refusal.

The gateway reports ``code.value`` as ``properties.reported.firmware.error.code``,
so values are part of the twin contract: add members, never rename them.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    OK = "OK"  # every check passed

    # Desired twin properties (properties.desired.firmware).
    DESIRED_NOT_OBJECT = "DESIRED_NOT_OBJECT"  # the firmware section is not a JSON object
    DESIRED_MISSING_FIELD = "DESIRED_MISSING_FIELD"  # a required field is absent or null
    DESIRED_WRONG_TYPE = "DESIRED_WRONG_TYPE"  # a field has the wrong JSON type
    DESIRED_STRING_TOO_LONG = "DESIRED_STRING_TOO_LONG"  # a string exceeds its length limit
    DESIRED_BAD_VERSION = "DESIRED_BAD_VERSION"  # fwVersion is not a semantic version
    DESIRED_BAD_URI = "DESIRED_BAD_URI"  # fwPackageURI does not parse or has no host
    DESIRED_BAD_URI_SCHEME = "DESIRED_BAD_URI_SCHEME"  # fwPackageURI scheme is not allowed
    DESIRED_BAD_CHECK_VALUE = "DESIRED_BAD_CHECK_VALUE"  # fwPackageCheckValue is not SHA-256 hex
    DESIRED_BAD_SIZE = "DESIRED_BAD_SIZE"  # fwPackageSize is not a positive integer
    DESIRED_BAD_WINDOW = "DESIRED_BAD_WINDOW"  # installWindow is not {start, end, tz}

    # Package file structure.
    TRUNCATED = "TRUNCATED"  # the file ends before its declared contents
    MALFORMED = "MALFORMED"  # bad magic, bad header fields or trailing bytes
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"  # a format version this code does not know
    MANIFEST_INVALID = "MANIFEST_INVALID"  # manifest is not canonical JSON of the v1 schema
    PAYLOAD_HASH_MISMATCH = "PAYLOAD_HASH_MISMATCH"  # payload bytes differ from manifest SHA-256

    # Signature and trust.
    UNSIGNED = "UNSIGNED"  # no signature and the policy requires one
    UNTRUSTED_KEY = "UNTRUSTED_KEY"  # signed by a key that is not a trust anchor
    SIGNATURE_INVALID = "SIGNATURE_INVALID"  # signature does not verify over the manifest

    # Against the twin and the target MCU.
    CHECK_VALUE_MISMATCH = "CHECK_VALUE_MISMATCH"  # package SHA-256 != fwPackageCheckValue
    SIZE_MISMATCH = "SIZE_MISMATCH"  # package length != fwPackageSize
    TOO_LARGE = "TOO_LARGE"  # package or payload exceeds the configured cap or the slot
    VERSION_MISMATCH = "VERSION_MISMATCH"  # manifest version != fwVersion
    TARGET_INVALID = "TARGET_INVALID"  # the MCU's compatibility string is malformed
    INCOMPATIBLE_MANUFACTURER = "INCOMPATIBLE_MANUFACTURER"  # built for another manufacturer
    INCOMPATIBLE_MODEL = "INCOMPATIBLE_MODEL"  # built for another MCU model
    INCOMPATIBLE_HWREV = "INCOMPATIBLE_HWREV"  # built for another hardware revision
    DOWNGRADE = "DOWNGRADE"  # older than installed and allowDowngrade is false
    BELOW_MINIMUM_VERSION = "BELOW_MINIMUM_VERSION"  # installed version < manifest minimum
    DELTA_UNSUPPORTED = "DELTA_UNSUPPORTED"  # a delta package for an MCU that cannot apply one
    DELTA_BASE_MISMATCH = "DELTA_BASE_MISMATCH"  # a delta whose base is not what the MCU runs

    # Download and cache.
    URL_REFUSED = "URL_REFUSED"  # scheme not allowed (file://, or http:// unless configured)
    PACKAGE_NOT_FOUND = "PACKAGE_NOT_FOUND"  # the server answered 404 or 410
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"  # other HTTP error, or retries exhausted
    DOWNLOAD_TIMEOUT = "DOWNLOAD_TIMEOUT"  # the overall deadline passed
    DOWNLOAD_TOO_LARGE = "DOWNLOAD_TOO_LARGE"  # the response exceeded the size cap
    DOWNLOAD_SIZE_MISMATCH = "DOWNLOAD_SIZE_MISMATCH"  # length differs from fwPackageSize
    DOWNLOAD_HASH_MISMATCH = "DOWNLOAD_HASH_MISMATCH"  # downloaded bytes differ from check value
    CACHE_ERROR = "CACHE_ERROR"  # the cache directory could not be written
    STORAGE_FULL = "STORAGE_FULL"  # too little free disk for the package (free, needed bytes)

    # Keys.
    KEY_INVALID = "KEY_INVALID"  # a key file is unreadable or of an unsupported type

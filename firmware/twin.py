"""The desired firmware twin section, validated field by field.

A malformed desired section must never crash the gateway or reach the MCU:
``parse_desired`` turns any JSON value into a :class:`DesiredFirmware` or a
:class:`DesiredFirmwareError` whose ``reason`` and ``field`` go into the
reported ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from firmware.errors import DesiredFirmwareError
from firmware.manifest import parse_version
from firmware.reasons import ReasonCode

MAX_URI_LEN = 4096  # SAS-signed blob URLs are long, but not this long
MAX_VERSION_LEN = 128
MAX_SIZE = 2**40
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_R = ReasonCode


@dataclass(frozen=True)
class InstallWindow:
    start: str  # "HH:MM"
    end: str  # "HH:MM"; before start means the window crosses midnight
    tz: str


@dataclass(frozen=True)
class FullPackage:
    """``fwFullPackage``: the full package to use when a delta's base does not match."""

    fwPackageURI: str
    fwPackageCheckValue: str  # lower-case hex
    fwPackageSize: int | None = None


@dataclass(frozen=True)
class DesiredFirmware:
    """The twin's ``properties.desired.firmware``; names follow the twin's spelling."""

    fwVersion: str  # mirrors the twin field name
    fwPackageURI: str
    fwPackageCheckValue: str  # normalised to lower-case hex
    fwPackageSize: int | None = None
    allowDowngrade: bool = False
    installWindow: InstallWindow | None = None
    #: Operator retry counter: a new value retries a failed update of the same package.
    retry: int = 0
    #: When fwPackageURI is a delta package: the full package for MCUs it does not fit.
    fwFullPackage: FullPackage | None = None


def parse_desired(raw: object, *, allowed_schemes: Collection[str] = ("https",)) -> DesiredFirmware:
    """Validate the desired section; the first bad field raises with its own reason code."""
    if not isinstance(raw, dict):
        raise DesiredFirmwareError(
            _R.DESIRED_NOT_OBJECT, "firmware", "desired firmware must be a JSON object"
        )
    version = _required_str(raw, "fwVersion", MAX_VERSION_LEN)
    try:
        parse_version(version)
    except ValueError as exc:
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_VERSION, "fwVersion", f"fwVersion: {exc}"
        ) from None
    uri, check, size = _package_fields(raw, allowed_schemes)
    full = raw.get("fwFullPackage")
    if full is not None:
        if not isinstance(full, dict):
            raise DesiredFirmwareError(
                _R.DESIRED_WRONG_TYPE, "fwFullPackage", "fwFullPackage must be a JSON object"
            )
        try:
            full = FullPackage(*_package_fields(full, allowed_schemes))
        except DesiredFirmwareError as exc:
            raise DesiredFirmwareError(
                exc.reason, f"fwFullPackage.{exc.field}", f"fwFullPackage.{exc.message}"
            ) from None
    downgrade = raw.get("allowDowngrade", False)
    if downgrade is None:
        downgrade = False
    if not isinstance(downgrade, bool):
        raise DesiredFirmwareError(
            _R.DESIRED_WRONG_TYPE, "allowDowngrade", "allowDowngrade must be true or false"
        )
    retry = raw.get("retry", 0)
    if retry is None:
        retry = 0
    if not isinstance(retry, int) or isinstance(retry, bool) or not 0 <= retry < 2**53:
        raise DesiredFirmwareError(
            _R.DESIRED_WRONG_TYPE,
            "retry",
            f"retry must be a non-negative integer, not {retry!r:.40}",
        )
    return DesiredFirmware(
        fwVersion=version,
        fwPackageURI=uri,
        fwPackageCheckValue=check.lower(),
        fwPackageSize=size,
        allowDowngrade=downgrade,
        installWindow=_window(raw.get("installWindow")),
        retry=retry,
        fwFullPackage=full,
    )


def _package_fields(
    raw: dict[str, Any], allowed_schemes: Collection[str]
) -> tuple[str, str, int | None]:
    uri = _required_str(raw, "fwPackageURI", MAX_URI_LEN)
    _check_uri(uri, allowed_schemes)
    check = _required_str(raw, "fwPackageCheckValue", 64)
    if not _HEX64.fullmatch(check):
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_CHECK_VALUE,
            "fwPackageCheckValue",
            "fwPackageCheckValue must be 64 hex digits (SHA-256)",
        )
    size = raw.get("fwPackageSize")
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_SIZE
    ):
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_SIZE,
            "fwPackageSize",
            f"fwPackageSize must be a positive integer, not {size!r:.40}",
        )
    return uri, check.lower(), size


def _required_str(raw: dict[str, Any], field: str, limit: int) -> str:
    value = raw.get(field)
    if value is None:
        raise DesiredFirmwareError(_R.DESIRED_MISSING_FIELD, field, f"{field} is required")
    if not isinstance(value, str):
        raise DesiredFirmwareError(
            _R.DESIRED_WRONG_TYPE, field, f"{field} must be a string, not {type(value).__name__}"
        )
    if len(value) > limit:
        raise DesiredFirmwareError(
            _R.DESIRED_STRING_TOO_LONG, field, f"{field} is {len(value)} characters, limit {limit}"
        )
    return value


def _check_uri(uri: str, allowed: Collection[str]) -> None:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_URI, "fwPackageURI", f"fwPackageURI does not parse: {exc}"
        ) from None
    if parts.scheme.lower() not in allowed:
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_URI_SCHEME,
            "fwPackageURI",
            f"fwPackageURI scheme {parts.scheme!r:.20} is not one of {', '.join(sorted(allowed))}",
        )
    if not host or not uri.isprintable() or " " in uri:
        raise DesiredFirmwareError(
            _R.DESIRED_BAD_URI,
            "fwPackageURI",
            "fwPackageURI needs a host and no spaces or control characters",
        )


def _window(value: object) -> InstallWindow | None:
    if value is None:
        return None
    bad = DesiredFirmwareError(
        _R.DESIRED_BAD_WINDOW,
        "installWindow",
        'installWindow must be {"start": "HH:MM", "end": "HH:MM", "tz": "<IANA zone>"}',
    )
    if not isinstance(value, dict) or set(value) - {"start", "end", "tz"}:
        raise bad
    start, end, tz = value.get("start"), value.get("end"), value.get("tz", "UTC")
    if not (isinstance(start, str) and isinstance(end, str) and isinstance(tz, str)):
        raise bad
    if not (_HHMM.fullmatch(start) and _HHMM.fullmatch(end)) or len(tz) > 64:
        raise bad
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad from None
    return InstallWindow(start, end, tz)

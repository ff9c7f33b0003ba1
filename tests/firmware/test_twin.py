from __future__ import annotations

from typing import Any

import pytest

from firmware.errors import DesiredFirmwareError
from firmware.reasons import ReasonCode
from firmware.twin import InstallWindow, parse_desired

GOOD: dict[str, Any] = {
    "fwVersion": "1.2.3",
    "fwPackageURI": "https://blob.example.com/fw/app.fwpkg?sv=2024&sig=abc",
    "fwPackageCheckValue": "AB" * 32,
}


def test_minimal_desired_section() -> None:
    d = parse_desired(GOOD)
    assert d.fwVersion == "1.2.3"
    assert d.fwPackageCheckValue == "ab" * 32
    assert d.fwPackageSize is None
    assert d.allowDowngrade is False
    assert d.installWindow is None


def test_optional_fields() -> None:
    d = parse_desired(
        {
            **GOOD,
            "fwPackageSize": 1234,
            "allowDowngrade": True,
            "installWindow": {"start": "22:00", "end": "04:30", "tz": "UTC"},
        }
    )
    assert d.fwPackageSize == 1234
    assert d.allowDowngrade
    assert d.installWindow == InstallWindow("22:00", "04:30", "UTC")


@pytest.mark.parametrize(
    ("patch", "reason", "field"),
    [
        ({"fwVersion": None}, ReasonCode.DESIRED_MISSING_FIELD, "fwVersion"),
        ({"fwVersion": 1.2}, ReasonCode.DESIRED_WRONG_TYPE, "fwVersion"),
        ({"fwVersion": "1.2"}, ReasonCode.DESIRED_BAD_VERSION, "fwVersion"),
        ({"fwVersion": "1" * 10_000}, ReasonCode.DESIRED_STRING_TOO_LONG, "fwVersion"),
        ({"fwPackageURI": "file:///etc/passwd"}, ReasonCode.DESIRED_BAD_URI_SCHEME, "fwPackageURI"),
        (
            {"fwPackageURI": "http://example.com/a"},
            ReasonCode.DESIRED_BAD_URI_SCHEME,
            "fwPackageURI",
        ),
        ({"fwPackageURI": "https:///nohost"}, ReasonCode.DESIRED_BAD_URI, "fwPackageURI"),
        ({"fwPackageURI": "https://h:99999999/"}, ReasonCode.DESIRED_BAD_URI, "fwPackageURI"),
        (
            {"fwPackageURI": "https://h/" + "a" * 100_000},
            ReasonCode.DESIRED_STRING_TOO_LONG,
            "fwPackageURI",
        ),
        ({"fwPackageURI": ["x"]}, ReasonCode.DESIRED_WRONG_TYPE, "fwPackageURI"),
        (
            {"fwPackageCheckValue": "zz" * 32},
            ReasonCode.DESIRED_BAD_CHECK_VALUE,
            "fwPackageCheckValue",
        ),
        ({"fwPackageSize": -1}, ReasonCode.DESIRED_BAD_SIZE, "fwPackageSize"),
        ({"fwPackageSize": True}, ReasonCode.DESIRED_BAD_SIZE, "fwPackageSize"),
        ({"allowDowngrade": "yes"}, ReasonCode.DESIRED_WRONG_TYPE, "allowDowngrade"),
        (
            {"installWindow": {"start": "25:00", "end": "01:00"}},
            ReasonCode.DESIRED_BAD_WINDOW,
            "installWindow",
        ),
        (
            {"installWindow": {"start": "01:00", "end": "02:00", "tz": "Mars/Olympus"}},
            ReasonCode.DESIRED_BAD_WINDOW,
            "installWindow",
        ),
    ],
)
def test_each_bad_field_has_its_code(patch: dict[str, Any], reason: ReasonCode, field: str) -> None:
    with pytest.raises(DesiredFirmwareError) as exc:
        parse_desired({**GOOD, **patch})
    assert exc.value.reason is reason
    assert exc.value.field == field
    assert field in exc.value.message


def test_http_allowed_when_configured() -> None:
    d = parse_desired(
        {**GOOD, "fwPackageURI": "http://10.0.0.1/a"}, allowed_schemes={"http", "https"}
    )
    assert d.fwPackageURI.startswith("http://")


@pytest.mark.parametrize("raw", [None, [], "x", 3])
def test_not_an_object(raw: object) -> None:
    with pytest.raises(DesiredFirmwareError) as exc:
        parse_desired(raw)
    assert exc.value.reason is ReasonCode.DESIRED_NOT_OBJECT


def test_operator_retry_counter() -> None:
    assert parse_desired(GOOD).retry == 0
    assert parse_desired({**GOOD, "retry": None}).retry == 0
    assert parse_desired({**GOOD, "retry": 3}).retry == 3


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, [1]])
def test_operator_retry_counter_must_be_a_non_negative_integer(bad: object) -> None:
    with pytest.raises(DesiredFirmwareError) as exc:
        parse_desired({**GOOD, "retry": bad})
    assert exc.value.field == "retry"
    assert exc.value.reason is ReasonCode.DESIRED_WRONG_TYPE

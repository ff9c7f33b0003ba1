from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest

from firmware.twin import InstallWindow
from gateway.logs import JsonFormatter, mcu_logger, setup_logging
from gateway.window import seconds_until_open

UTC = dt.UTC


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 27, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        ("02:00", "04:00", _at(3), 0.0),
        ("02:00", "04:00", _at(1), 3600.0),
        ("02:00", "04:00", _at(5), 21 * 3600.0),
        ("22:00", "02:00", _at(23), 0.0),  # across midnight
        ("22:00", "02:00", _at(1), 0.0),
        ("22:00", "02:00", _at(12), 10 * 3600.0),
    ],
)
def test_install_window(start: str, end: str, now: dt.datetime, expected: float) -> None:
    assert seconds_until_open(InstallWindow(start, end, "UTC"), now) == expected


def test_install_window_in_another_time_zone() -> None:
    # 02:00-04:00 in Tokyo (UTC+9) is 17:00-19:00 UTC.
    window = InstallWindow("02:00", "04:00", "Asia/Tokyo")
    assert seconds_until_open(window, _at(18)) == 0.0
    assert seconds_until_open(window, _at(16)) == 3600.0


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_carry_mcu_and_phase() -> None:
    setup_logging("text", "INFO")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = mcu_logger("gateway.mcu", "vmcu-f4-0102")
    log.phase("applying").info("wrote %d bytes", 4096)
    logging.getLogger("azure.iot").warning("sdk line")
    text = stream.getvalue()
    assert "mcu=vmcu-f4-0102 phase=applying" in text
    assert "wrote 4096 bytes" in text
    assert "mcu=- phase=-" in text  # library lines get placeholders


def test_json_log_format() -> None:
    record = logging.LogRecord("gateway.mcu", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    record.mcu = "dev-1"
    record.phase = "downloading"
    out = json.loads(JsonFormatter().format(record))
    assert out["mcu"] == "dev-1"
    assert out["phase"] == "downloading"
    assert out["msg"] == "hello x"
    assert out["level"] == "INFO"

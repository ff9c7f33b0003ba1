"""Which ports the gateway probes: explicit paths, globs, URLs and USB VID:PID filters."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import SerialSettings, UsbFilter
from gateway.discovery import candidate_ports, port_present


def test_paths_globs_and_urls(tmp_path: Path) -> None:
    for name in ("ttyA", "ttyB", "other"):
        (tmp_path / name).touch()
    settings = SerialSettings(
        ports=(str(tmp_path / "tty*"), "socket://10.0.0.5:4001", str(tmp_path / "ttyA"))
    )
    assert candidate_ports(settings) == [
        str(tmp_path / "ttyA"),
        str(tmp_path / "ttyB"),
        "socket://10.0.0.5:4001",
    ]


def test_usb_vid_pid_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    from serial.tools import list_ports

    ports = [
        SimpleNamespace(device="/dev/ttyUSB0", vid=0x0403, pid=0x6001),
        SimpleNamespace(device="/dev/ttyUSB1", vid=0x10C4, pid=0xEA60),
        SimpleNamespace(device="/dev/ttyACM0", vid=None, pid=None),
    ]
    # Only the OS enumeration is replaced; the filtering is ours.
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    settings = SerialSettings(usb=(UsbFilter(0x0403, 0x6001),))
    assert candidate_ports(settings) == ["/dev/ttyUSB0"]


def test_unplugged_port_is_absent(tmp_path: Path) -> None:
    link = tmp_path / "mcu-000"
    link.symlink_to(tmp_path / "gone")
    assert not port_present(str(link))  # a dangling link is an unplugged MCU
    assert port_present("socket://10.0.0.5:4001")

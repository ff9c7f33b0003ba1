"""The stm32-rom simulator answers stm32loader (a third-party AN3155 host) as a chip would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from stm32loader import main as stm32loader_main
from stm32loader.bootloader import CommandError, Stm32Bootloader

from simulators.mcu.stm32rom import stm32loader_pty
from tests.sim_harness import running_sim

UID = bytes.fromhex("a1a2a3a4b1b2b3b4c1c2c3c4")
SIM = ("--bootloader", "stm32-rom", "--boot0", "high", "--baud", "460800", "--uid", UID.hex(),
       "--flash-scale", "0.1")  # fmt: skip


@pytest.fixture
def link(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[serial.Serial]:
    model = getattr(request, "param", "stm32f103")
    with running_sim(tmp_path / "mcu", *SIM, "--model", model) as sim:
        # A pty has no parity bit and Linux refuses PARENB on one once the port is
        # reconfigured (stm32loader changes the timeout around erases): 8N1 here, which
        # stm32loader offers as --parity none. The simulated chip reads 8-bit bytes.
        port = serial.Serial(sim.port, 460800, parity=serial.PARITY_NONE, timeout=3)
        try:
            yield port
        finally:
            port.close()


def test_f1_identity_erase_write_verify_go(link: serial.Serial) -> None:
    loader = Stm32Bootloader(link, device_family="F1", verbosity=0)
    loader.reset_from_system_memory()  # 0x7F autobaud; no reset line on a plain Serial
    assert loader.get() == 0x22
    assert not loader.extended_erase
    assert loader.get_version() == 0x22
    assert loader.get_id() == 0x410
    assert bytes(loader.get_uid()) == UID
    assert loader.get_flash_size() == 128
    data = random.Random(7).randbytes(3000)
    loader.erase_memory([0, 1, 2])  # 1 KiB pages
    loader.write_memory_data(0x0800_0000, data)
    assert bytes(loader.read_memory_data(0x0800_0000, len(data))) == data
    # An F1 skips half-words that are not erased (PGERR), except 0x0000, and still ACKs.
    loader.write_memory(0x0800_0000, b"\x0f\xf0\x00\x00")
    assert bytes(loader.read_memory(0x0800_0000, 4)) == data[:2] + b"\x00\x00"
    loader.erase_memory(None)  # global erase
    assert bytes(loader.read_memory_data(0x0800_0000, 512)) == b"\xff" * 512
    with pytest.raises(CommandError, match="NACK"):
        loader.read_memory(0x6000_0000, 4)  # nothing mapped there
    with pytest.raises(CommandError, match="NACK"):
        loader.write_memory(0x0800_0002, b"\x00" * 4)  # not word aligned
    with pytest.raises(CommandError, match="NACK"):
        loader.command(0xA1, "Get checksum")  # not in bootloader 2.2: Get does not list it
    loader.write_memory_data(0x0800_0000, data[:256])
    loader.go(0x0800_0000)
    # The application runs now and does not speak AN3155.
    link.timeout = 0.5
    link.write(b"\x7f")
    assert link.read(1) == b""


@pytest.mark.parametrize("link", ["stm32f407"], indirect=True)
def test_f4_extended_erase_and_registers_block(link: serial.Serial) -> None:
    loader = Stm32Bootloader(link, device_family="F4", verbosity=0)
    loader.reset_from_system_memory()
    assert loader.get() == 0x31
    assert loader.extended_erase  # Get lists 0x44
    assert loader.get_id() == 0x413
    flash_kib, uid = loader.get_flash_size_and_uid()  # one 256-byte read at 0x1FFF7A00
    assert (flash_kib, bytes(uid)) == (1024, UID)
    data = random.Random(8).randbytes(20_000)
    loader.erase_memory([0, 1])  # sectors of 16 KiB
    loader.write_memory_data(0x0800_0000, data)
    assert bytes(loader.read_memory_data(0x0800_0000, len(data))) == data
    # An F4 programs any word, clearing bits (RM0090 3.6): the old contents ANDed.
    loader.write_memory(0x0800_0000, b"\x0f\xf0\xff\x00")
    assert bytes(loader.read_memory(0x0800_0000, 4)) == bytes(
        a & b for a, b in zip(data[:4], b"\x0f\xf0\xff\x00", strict=True)
    )
    with pytest.raises(CommandError, match="NACK"):
        loader.erase_memory([12])  # no such sector on a 1 MiB part


def test_stm32loader_command_line_flashes_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stm32loader CLI itself (erase, write, verify, go) through the documented wrapper,
    which only makes its DTR/RTS toggles no-ops: a pty has no modem lines."""
    image = tmp_path / "app.bin"
    image.write_bytes(random.Random(9).randbytes(5000))
    with running_sim(tmp_path / "mcu", *SIM) as sim:
        stm32loader_pty.main(
            ["-p", sim.port, "-b", "460800", "-f", "F1", "-P", "none", "-e", "-w", "-v", "-n",
             "-g", "0x08000000", str(image)]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert "Verification OK" in err
    assert "Chip id: 0x410" in err
    assert f"Device UID: {Stm32Bootloader.format_uid(UID)}" in err
    assert "Flash size: 128 KiB" in err


def test_stm32loader_as_shipped_stops_at_the_missing_modem_lines(tmp_path: Path) -> None:
    """Why the wrapper exists: unpatched, stm32loader's first DTR/RTS toggle fails on a pty."""
    with running_sim(tmp_path / "mcu", *SIM) as sim, pytest.raises(OSError):
        stm32loader_main.main("-p", sim.port, "-f", "F1", "-P", "none", "-n")

"""Readout protection in the stm32-rom simulator, as ST AN3155 describes it, seen by
our codec and by the two tools users already run (stm32flash, stm32loader)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial
from stm32loader.bootloader import CommandError, Stm32Bootloader

from protocols.stm32rom import codec
from protocols.stm32rom.codec import Command, Nack
from tests.sim_harness import running_sim

SIM = ("--bootloader", "stm32-rom", "--boot0", "high", "--baud", "0", "--flash-scale", "0.05")
#: AN3155 Table 2: the USART commands of bootloader v2.2 (F1) and v3.1 (F4).
COMMON = {0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x63, 0x73, 0x82, 0x92}
STM32FLASH = shutil.which("stm32flash")


@contextmanager
def _port(path: str, timeout: float = 3.0) -> Iterator[serial.Serial]:
    port = serial.Serial(path, 115200, timeout=timeout)  # a pty has no parity bit
    try:
        yield port
    finally:
        port.close()


def _exchange(port: serial.Serial, ex: codec.Exchange) -> list[bytes]:
    while not ex.done:
        port.write(ex.data_to_send())
        while ex.waiting:
            data = port.read(1)
            assert data, f"no answer to {ex.command.name} at its {ex.stage.name}"
            ex.receive_data(data)
    return ex.payloads


def _sync(port: serial.Serial) -> None:
    port.write(b"\x7f")
    assert port.read(1) == bytes([codec.ACK])


@pytest.mark.parametrize(("model", "version", "erase"), [("stm32f103", 0x22, 0x43),
                                                          ("stm32f407", 0x31, 0x44)])  # fmt: skip
@pytest.mark.parametrize("rdp", ["0", "1"])
def test_get_lists_what_the_bootloader_version_has_protected_or_not(
    tmp_path: Path, model: str, version: int, erase: int, rdp: str
) -> None:
    with (
        running_sim(tmp_path, *SIM, "--model", model, "--rdp", rdp) as sim,
        _port(sim.port) as port,
    ):
        _sync(port)
        (body,) = _exchange(port, codec.get())
        info = codec.BootloaderInfo(body[0], frozenset(body[1:]))
        assert info.version == version
        assert info.commands == COMMON | {erase}
        assert len(body) - 1 == 11
        assert _exchange(port, codec.get_id())  # Get ID answers under RDP too


def test_rdp_refuses_at_the_command_byte_and_unprotect_mass_erases_and_resets(
    tmp_path: Path,
) -> None:
    state = tmp_path / "mcu"
    with running_sim(state, *SIM) as sim, _port(sim.port) as port:
        _sync(port)
        _exchange(port, codec.erase([0]))
        _exchange(port, codec.write_memory(0x0800_0000, b"\x12\x34\x56\x78"))
        _exchange(port, codec.readout_protect())  # ACK, ACK, then the part resets
        assert json.loads((state / "stm32rom.json").read_text())["rdp"] is True
        _sync(port)  # a fresh ROM after the reset measures the baud rate again
        refused = [
            codec.read_memory(0x0800_0000, 4),
            codec.write_memory(0x0800_0000, b"\x00" * 4),
            codec.go(0x0800_0000),
            codec.erase([0]),
            codec.readout_protect(),
        ]
        for ex in refused:
            with pytest.raises(Nack) as err:
                _exchange(port, ex)
            assert err.value.stage == "command", ex.command.name
        _exchange(port, codec.readout_unprotect())
        _sync(port)
        (data,) = _exchange(port, codec.read_memory(0x0800_0000, 4))
        assert data == b"\xff" * 4  # mass-erased with the protection
    assert json.loads((state / "stm32rom.json").read_text())["rdp"] is False


def test_the_protection_persists_over_a_power_cycle(tmp_path: Path) -> None:
    with running_sim(tmp_path, *SIM, "--rdp", "1"):
        pass
    with running_sim(tmp_path, *SIM) as sim, _port(sim.port) as port:
        _sync(port)
        with pytest.raises(Nack):
            _exchange(port, codec.read_memory(0x0800_0000, 4))


def test_write_protection_refuses_erase_and_write_until_write_unprotect(tmp_path: Path) -> None:
    with running_sim(tmp_path, *SIM) as sim, _port(sim.port) as port:
        _sync(port)
        port.write(codec.command_frame(Command.WRITE_PROTECT))
        assert port.read(1) == bytes([codec.ACK])
        port.write(bytes([0, 1, 1]))  # one unit: page 1, checksum
        assert port.read(1) == bytes([codec.ACK])
        _sync(port)  # reset after the option bytes changed
        with pytest.raises(Nack) as err:
            _exchange(port, codec.erase([1]))
        assert err.value.stage == "page list"
        with pytest.raises(Nack):
            _exchange(port, codec.write_memory(0x0800_0400, b"\x00" * 4))
        _exchange(port, codec.erase([0]))  # other pages are not protected
        port.write(codec.command_frame(Command.WRITE_UNPROTECT))
        assert port.read(2) == bytes([codec.ACK, codec.ACK])
        _sync(port)
        _exchange(port, codec.erase([1]))


def test_stm32flash_sees_the_protection_and_its_unprotect_works(tmp_path: Path) -> None:
    assert STM32FLASH is not None
    out = tmp_path / "read.bin"
    with running_sim(tmp_path / "mcu", *SIM, "--rdp", "1") as sim:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            # 8n1: a pty has no parity bit; -c: the loader is already synced.
            cmd = [STM32FLASH, "-m", "8n1", "-b", "115200", *args, sim.port]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

        info = run()
        assert info.returncode == 0, info.stderr
        assert "Device ID    : 0x0410" in info.stdout
        read = run("-c", "-r", str(out), "-S", "0x08000000:1024")
        assert read.returncode != 0
        assert "Got NACK from device on command 0x11" in read.stderr
        unprotect = run("-c", "-k")
        assert unprotect.returncode == 0, unprotect.stderr
        assert "Read-UnProtecting flash" in unprotect.stdout
        read = run("-r", str(out), "-S", "0x08000000:1024")  # fresh sync after the reset
        assert read.returncode == 0, read.stderr
    assert out.read_bytes() == b"\xff" * 1024


def test_stm32loader_sees_the_protection_and_its_unprotect_works(tmp_path: Path) -> None:
    with (
        running_sim(tmp_path / "mcu", *SIM, "--rdp", "1") as sim,
        serial.Serial(sim.port, 115200, parity=serial.PARITY_NONE, timeout=3) as link,
    ):
        loader = Stm32Bootloader(link, device_family="F1", verbosity=0)
        loader.reset_from_system_memory()
        assert loader.get() == 0x22
        assert loader.get_id() == 0x410
        with pytest.raises(CommandError, match="NACK"):
            loader.read_memory(0x0800_0000, 4)
        loader.readout_unprotect()
        loader.reset_from_system_memory()  # the part reset itself: sync again
        assert bytes(loader.read_memory(0x0800_0000, 4)) == b"\xff" * 4

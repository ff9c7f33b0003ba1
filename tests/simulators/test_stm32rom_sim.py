"""The stm32-rom simulator's own behaviour: options, BOOT0, pacing and flash timing."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.stm32rom import codec
from simulators.mcu.stm32rom.chip import MODELS, Chip
from tests.sim_harness import cli, running_sim

SIM = ("--bootloader", "stm32-rom")


@contextmanager
def _port(path: str, timeout: float = 2.0) -> Iterator[serial.Serial]:
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


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--model", "stm32f999"), "stm32-rom models are"),
        (("--fault", "bogus"), "bad --fault 'bogus'"),
        (("--uid", "zz"), "not hex"),
        (("--uid", "0102"), "12 bytes"),
        (("--count", "2"), "one MCU per process"),
    ],
)
def test_bad_options_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    code, _, err = cli(capsys, "sim", "--pty", *SIM, "--state", str(tmp_path), *args)
    assert code == 1
    assert words in err


def test_state_of_another_model_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with running_sim(tmp_path, *SIM, "--model", "stm32f103x8"):
        pass
    code, _, err = cli(capsys, "sim", "--pty", *SIM, "--state", str(tmp_path),
                       "--model", "stm32f407")  # fmt: skip
    assert code == 1
    assert "holds a stm32f103x8" in err


def test_boot0_low_with_blank_flash_hangs_silently(tmp_path: Path) -> None:
    with (
        running_sim(tmp_path, *SIM, "--boot0", "low", "--baud", "0") as sim,
        _port(sim.port, timeout=0.3) as port,
    ):
        port.write(b"\x7f")
        assert port.read(1) == b""
        port.write(b"bootloader\n\x7f")  # no app to jump from
        assert port.read(1) == b""


def test_link_is_paced_and_erase_takes_the_parts_time(tmp_path: Path) -> None:
    with (
        running_sim(tmp_path, *SIM, "--boot0", "high", "--baud", "115200") as sim,
        _port(sim.port) as port,
    ):
        port.write(bytes([codec.SYNC]))
        assert port.read(1) == bytes([codec.ACK])
        t0 = time.monotonic()
        (data,) = _exchange(port, codec.read_memory(0x0800_0000, 256))
        elapsed = time.monotonic() - t0
        assert data == b"\xff" * 256
        # At least the wire time of the 256 bytes and the 9 command bytes, 11 bits each.
        assert elapsed >= (256 + 3 + 9) * 11 / 115200
        t0 = time.monotonic()
        _exchange(port, codec.erase(list(range(10))))
        assert time.monotonic() - t0 >= 10 * 0.020  # F103: ~20 ms per 1 KiB page
        # PM0075 2.3.3: an F1 programs only erased half-words (and 0x0000 anywhere), and
        # the ROM ACKs either way (AN2662 figure 14); read back what the flash holds.
        _exchange(port, codec.write_memory(0x0800_0000, b"\x0f\x0f\xff\xff"))
        _exchange(port, codec.write_memory(0x0800_0000, b"\xf1\xf1\xf1\xf1"))
        (data,) = _exchange(port, codec.read_memory(0x0800_0000, 4))
        assert data == b"\x0f\x0f\xf1\xf1"
        _exchange(port, codec.write_memory(0x0800_0000, b"\x00\x00\x00\x00"))
        (data,) = _exchange(port, codec.read_memory(0x0800_0000, 4))
        assert data == b"\x00\x00\x00\x00"


class _MemPort:
    """An in-memory UART for the chip; ``idle`` is set while it waits for bytes."""

    def __init__(self, data: bytes) -> None:
        self.rx = bytearray(data)
        self.tx = bytearray()
        self.idle = asyncio.Event()

    async def read(self, n: int) -> bytes:
        if len(self.rx) < n:
            self.idle.set()
            await asyncio.Event().wait()  # starved: the host has nothing more to say
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    async def write(self, data: bytes) -> None:
        self.tx += data

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(noise=st.binary(min_size=1, max_size=300))
def test_the_rom_loader_survives_any_bytes(noise: bytes) -> None:
    """Fuzz: after a sync, arbitrary bytes only ever get ACK/NACK/data back, never a crash."""

    async def run() -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            chip = Chip(Path(tmp), MODELS["stm32f103"], boot0=True, flash_scale=0.0)
            port = _MemPort(b"\x7f" + noise)
            task = asyncio.create_task(chip.run(port))
            try:
                async with asyncio.timeout(10):
                    await port.idle.wait()
                assert not task.done(), task.exception()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                chip.flash.close()
            return bytes(port.tx)

    out = asyncio.run(run())
    assert out[:1] == bytes([codec.ACK])


@pytest.mark.parametrize(
    ("model", "start", "length", "accepted"),
    [
        ("stm32f407", 0x1FFF_7A10, 12, False),  # the uid register: past the OTP area
        ("stm32f407", 0x1FFF_7A22, 2, False),  # the flash-size register
        ("stm32f407", 0x1FFF_7A00, 0x24, True),  # from the OTP lock block: any length
        ("stm32f407", 0x1FFF_7A00, 256, True),  # stm32loader's read
        ("stm32f103", 0x1FFF_F7E8, 12, True),  # an F1's uid lies in its system memory
    ],
    ids=["f4-uid", "f4-flash-size", "f4-otp-lock-36", "f4-otp-lock-256", "f1-uid"],
)
def test_read_memory_start_addresses_an_f4_rom_refuses(
    tmp_path: Path, model: str, start: int, length: int, accepted: bool
) -> None:
    with (
        running_sim(tmp_path, *SIM, "--boot0", "high", "--baud", "0", "--model", model) as sim,
        _port(sim.port) as port,
    ):
        port.write(bytes([codec.SYNC]))
        assert port.read(1) == bytes([codec.ACK])
        ex = codec.read_memory(start, length)
        if accepted:
            (data,) = _exchange(port, ex)
            assert len(data) == length
        else:
            with pytest.raises(codec.Nack) as nack:
                _exchange(port, ex)
            assert nack.value.stage == "address"

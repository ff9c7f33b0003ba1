"""RESET and BOOT0 through Linux GPIO lines (``gpio:CHIP:LINE``).

No GPIO chip exists on the test machine (no /dev/gpiochip*, and the kernel's
gpio-sim needs configfs, which is not mounted here), so the sequencing is
tested against a fake chip behind the driver's :data:`GpioOpener` seam: its
lines are the board's NRST and BOOT0 pins, which hold the in-process chip in
reset and power it up into the ROM bootloader or the application. The libgpiod
adapter itself is exercised on its failure path (no such chip).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from pathlib import Path

import pytest

from protocols.driver import DriverError, DriverOptions, Image
from protocols.errors import TransportDisconnected
from protocols.stm32rom.driver import Stm32RomDriver
from protocols.stm32rom.lines import LineError, LineSpec, libgpiod_line, parse_line
from protocols.transport import ModemLines
from simulators.mcu.stm32rom.chip import MODELS, Chip
from tests.protocols.test_stm32rom_wiring import _Port


class GpioBoard:
    """A plain UART (no modem lines) plus GPIO lines wired to the chip's NRST and BOOT0."""

    name = "uart://gpio-board"

    def __init__(self, chip: Chip, wiring: dict[tuple[str, int | str], str]) -> None:
        self.chip = chip
        #: (chip path, line) -> "NRST" or "BOOT0", or "!NRST" through an inverting stage
        self.wiring = wiring
        self.pins = {"NRST": True, "BOOT0": False}  # pulled up / pulled down
        self.events: list[tuple[str, bool]] = []
        self.requested: list[tuple[str, int | str]] = []
        self.released: list[tuple[str, int | str]] = []
        self.boots: list[bool] = []
        self.to_host: asyncio.Queue[bytes] = asyncio.Queue()
        self.port = _Port(self)  # type: ignore[arg-type]  # needs only .to_host
        self._task: asyncio.Task[None] | None = None
        self._power_up()

    # ---- the GpioOpener seam

    def open_line(self, path: str, line: int | str, high: bool) -> _Line:
        key = (path, line)
        if key not in self.wiring:
            raise LineError(f"cannot request line {line} of {path}: no such line")
        self.requested.append(key)
        out = _Line(self, key)
        out.set(high)
        return out

    def level(self, key: tuple[str, int | str], high: bool) -> None:
        pin = self.wiring[key].lstrip("!")
        high = high != self.wiring[key].startswith("!")
        was_reset = not self.pins["NRST"]
        self.pins[pin] = high
        self.events.append((pin, high))
        if pin == "NRST" and high and was_reset:
            self._power_up()
        elif pin == "NRST" and not high and not was_reset and self._task is not None:
            self._task.cancel()
            self._task = None

    def _power_up(self) -> None:
        self.chip.boot0 = self.pins["BOOT0"]
        self.boots.append(self.chip.boot0)
        self.port.rx.clear()
        self._task = asyncio.get_running_loop().create_task(self.chip.run(self.port))

    # ---- the Transport

    async def write(self, data: bytes) -> None:
        if self._task is not None:
            self.port.rx += data
            self.port.arrived.set()

    async def read(self) -> bytes:
        return await self.to_host.get()

    def set_baud(self, baud: int) -> None:
        pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportDisconnected):
                await self._task


class _Line:
    def __init__(self, board: GpioBoard, key: tuple[str, int | str]) -> None:
        self.board, self.key = board, key

    def set(self, high: bool) -> None:
        self.board.level(self.key, high)

    def release(self) -> None:
        self.board.released.append(self.key)


def _image() -> Image:
    data = random.Random(12).randbytes(3000)
    return Image(data, "5.0.0", hashlib.sha256(data).hexdigest())


def test_line_specs() -> None:
    assert parse_line("gpio:gpiochip0:17") == LineSpec("gpio", "/dev/gpiochip0", 17)
    assert parse_line("gpio:/dev/gpiochip1:BOOT0") == LineSpec("gpio", "/dev/gpiochip1", "BOOT0")
    assert parse_line("DTR") == LineSpec("dtr")
    assert parse_line("none") is None
    for bad in ("gpio:17", "gpio:gpiochip0:", "cts"):
        with pytest.raises(LineError):
            parse_line(bad)


async def test_gpio_lines_reset_into_the_rom_and_back_into_the_app(tmp_path: Path) -> None:
    chip = Chip(tmp_path, MODELS["stm32f103"], boot0=False, flash_scale=0.01)
    board = GpioBoard(chip, {("/dev/gpiochip0", 17): "NRST", ("/dev/gpiochip0", "BOOT0"): "BOOT0"})
    assert not isinstance(board, ModemLines)
    extra: dict[str, str | int | bool] = {
        "reset_line": "gpio:gpiochip0:17",
        "boot0_line": "gpio:gpiochip0:BOOT0",
        "boot_delay_ms": 1,
    }
    driver = Stm32RomDriver(board, DriverOptions(baud=0, extra=extra), gpio=board.open_line)
    try:
        assert (await driver.identify()).in_bootloader  # blank flash: stays in the ROM
        assert (await driver.install(_image())).ok
        facts = await driver.identify()
        assert facts.installed_version == "5.0.0"
        assert not facts.in_bootloader
    finally:
        await board.close()
        chip.flash.close()
    # identify: BOOT0 high before NRST rises; install: out by a reset with BOOT0 low;
    # identify: in with BOOT0 high, out again to the verified app.
    assert board.boots == [False, True, False, True, False]
    first = board.events[:3]
    assert first == [("BOOT0", True), ("NRST", False), ("NRST", True)]
    # Each line is requested once and held between resets, then released with the driver.
    assert sorted(map(str, board.requested)) == sorted(map(str, set(board.requested)))
    driver.pins.close()
    assert sorted(map(str, board.released)) == sorted(map(str, board.requested))


async def test_inverted_gpio_polarity_is_configured_per_port(tmp_path: Path) -> None:
    chip = Chip(tmp_path, MODELS["stm32f103"], boot0=False, flash_scale=0.01)
    # NRST driven through an inverting stage: the GPIO line is high to reset.
    board = GpioBoard(chip, {("/dev/gpiochip2", 3): "!NRST", ("/dev/gpiochip2", 4): "BOOT0"})
    extra: dict[str, str | int | bool] = {
        "reset_line": "gpio:/dev/gpiochip2:3",
        "boot0_line": "gpio:/dev/gpiochip2:4",
        "reset_active_low": False,
        "boot_delay_ms": 1,
    }

    driver = Stm32RomDriver(board, DriverOptions(baud=0, extra=extra), gpio=board.open_line)
    try:
        assert (await driver.identify()).in_bootloader
    finally:
        await board.close()
        chip.flash.close()
    assert board.boots == [False, True]
    assert board.events[:3] == [("BOOT0", True), ("NRST", False), ("NRST", True)]


async def test_a_gpio_line_that_cannot_be_requested_is_a_config_error(tmp_path: Path) -> None:
    chip = Chip(tmp_path, MODELS["stm32f103"], boot0=True, flash_scale=0.01)
    board = GpioBoard(chip, {})
    extra: dict[str, str | int | bool] = {"reset_line": "gpio:gpiochip9:5", "boot_delay_ms": 1}
    driver = Stm32RomDriver(board, DriverOptions(baud=0, extra=extra), gpio=board.open_line)
    try:
        with pytest.raises(DriverError) as err:
            await driver.identify()
    finally:
        await board.close()
        chip.flash.close()
    assert err.value.code == "DRIVER_CONFIG_INVALID"
    assert "reset_line = gpio:/dev/gpiochip9:5" in err.value.message
    assert "\n" not in err.value.message


def test_libgpiod_adapter_names_the_chip_it_cannot_open() -> None:
    with pytest.raises(LineError, match="/dev/gpiochip-none"):
        libgpiod_line("/dev/gpiochip-none", 17, False)

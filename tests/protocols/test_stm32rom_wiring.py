"""RESET and BOOT0 through DTR/RTS: the driver against an in-process chip on a wired link.

A pty has no modem lines, so this board model takes their place: it turns the
line levels the driver sets into pin levels (an asserted line pulls a USB-UART
adapter's pin low), holds the chip in reset while NRST is active and powers it
up into the ROM bootloader or the application by the BOOT0 pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from pathlib import Path

import pytest

from protocols.driver import DriverOptions, Image, NoAnswer
from protocols.errors import TransportDisconnected
from protocols.stm32rom.driver import Stm32RomDriver
from protocols.transport import ModemLines
from simulators.mcu.stm32rom.chip import MODELS, Chip


class _Port:
    """The chip's side of the in-memory UART."""

    def __init__(self, board: WiredBoard) -> None:
        self.board = board
        self.rx = bytearray()
        self.arrived = asyncio.Event()

    async def read(self, n: int) -> bytes:
        while len(self.rx) < n:
            self.arrived.clear()
            await self.arrived.wait()
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    async def write(self, data: bytes) -> None:
        self.board.to_host.put_nowait(data)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WiredBoard:
    """A Transport with modem lines wired to the chip's NRST and BOOT0 pins."""

    name = "wired://board"

    def __init__(
        self, chip: Chip, *, reset: str, boot0: str, reset_active_low: bool, boot0_high: bool
    ) -> None:
        self.chip = chip
        self.reset, self.boot0 = reset, boot0
        self.reset_active_low, self.boot0_high = reset_active_low, boot0_high
        self.lines = {"dtr": False, "rts": False}
        self.to_host: asyncio.Queue[bytes] = asyncio.Queue()
        self.port = _Port(self)
        self.boots: list[bool] = []  # BOOT0 pin level at each power-up
        self._task: asyncio.Task[None] | None = None
        if not self._in_reset():  # idle lines may hold an active-high NRST in reset
            self._power_up()

    def _pin_high(self, line: str) -> bool:
        return not self.lines[line]  # asserted line = low pin

    def _in_reset(self) -> bool:
        return self._pin_high(self.reset) != self.reset_active_low

    def _power_up(self) -> None:
        self.chip.boot0 = self._pin_high(self.boot0) == self.boot0_high
        self.boots.append(self.chip.boot0)
        self.port.rx.clear()
        self._task = asyncio.get_running_loop().create_task(self.chip.run(self.port))

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> bool:
        was_reset = self._in_reset()
        if dtr is not None:
            self.lines["dtr"] = dtr
        if rts is not None:
            self.lines["rts"] = rts
        if self._in_reset() and not was_reset and self._task is not None:
            self._task.cancel()
            self._task = None
        elif was_reset and not self._in_reset():
            self._power_up()
        return True

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


def _image() -> Image:
    data = random.Random(11).randbytes(3000)
    return Image(data, "4.0.0", hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("reset", "boot0", "reset_active_low", "boot0_high"),
    [("dtr", "rts", True, True), ("rts", "dtr", False, False)],
)
async def test_lines_reset_into_the_rom_and_back_into_the_app(
    tmp_path: Path, reset: str, boot0: str, reset_active_low: bool, boot0_high: bool
) -> None:
    chip = Chip(tmp_path, MODELS["stm32f103"], boot0=False, flash_scale=0.01)
    board = WiredBoard(
        chip, reset=reset, boot0=boot0, reset_active_low=reset_active_low, boot0_high=boot0_high
    )
    assert isinstance(board, ModemLines)
    extra: dict[str, str | int | bool] = {
        "reset_line": reset,
        "boot0_line": boot0,
        "reset_active_low": reset_active_low,
        "boot0_active_high": boot0_high,
        "boot_delay_ms": 1,
    }
    driver = Stm32RomDriver(board, DriverOptions(baud=0, extra=extra))
    try:
        facts = await driver.identify()
        assert facts.installed_version is None
        assert facts.in_bootloader  # blank flash: nothing verified to start again
        result = await driver.install(_image())
        assert result.ok
        facts = await driver.identify()
        assert facts.installed_version == "4.0.0"
        assert not facts.in_bootloader
    finally:
        await board.close()
        chip.flash.close()
    # identify: into the ROM (stays: no app); install: already there, out by a reset
    # without BOOT0; identify: in with BOOT0, and out again to the verified app.
    assert board.boots[-4:] == [True, False, True, False]


async def test_wrong_polarity_never_reaches_the_rom(tmp_path: Path) -> None:
    chip = Chip(tmp_path, MODELS["stm32f103"], boot0=False, flash_scale=0.01)
    board = WiredBoard(chip, reset="dtr", boot0="rts", reset_active_low=True, boot0_high=True)
    extra: dict[str, str | int | bool] = {
        "reset_line": "dtr",
        "boot0_line": "rts",
        "boot0_active_high": False,  # the board says high
        "boot_delay_ms": 1,
    }
    driver = Stm32RomDriver(board, DriverOptions(baud=0, extra=extra))
    try:
        with pytest.raises(NoAnswer, match="after a reset with BOOT0"):
            await driver.identify()
    finally:
        await board.close()
        chip.flash.close()
    assert board.boots[1:] == [False]

"""A virtual STM32 with its ROM system bootloader (AN3155) and a tiny application.

The chip keeps its flash in a file of the state directory, written through at
once, so killing the process is a power cut. Memory it answers Read Memory for:
flash, SRAM, the system-memory block holding the unique-id and flash-size
registers, and the option bytes. Flash behaves as flash: erase sets a page to
0xFF, programming can only clear bits, and each takes the part's typical time.
An F1 programs half-words and skips one that is not erased (PGERR) unless the
value is 0x0000 (PM0075 2.3.3), and its ROM ACKs the write all the same (AN2662
figure 14 checks nothing after programming): only a read-back shows it. F2/F4
program any word, clearing bits (RM0090 3.6: "changing bits from 1 to 0").

After a reset the chip runs the ROM bootloader when BOOT0 is high, else the
application in flash. The application ignores the bootloader protocol; it
jumps back into the ROM bootloader when it reads :data:`APP_ENTER_COMMAND`
(as firmware that offers "reboot to bootloader" does), which is how a host
gets in on a pseudo-terminal, where there are no RESET/BOOT0 lines. With
blank flash (first word 0xFFFFFFFF) the application side hangs silently, as
an F1 with BOOT0 low does.

Readout protection (RDP level 1) follows ST AN3155: Get, Get Version and Get ID
still answer, and Get lists every command the bootloader version has; Read
Memory, Go, Write Memory, Erase, Extended Erase, Write Protect, Write Unprotect
and Readout Protect are NACKed at their command byte; Readout Unprotect
mass-erases the flash, clears the protection and resets the chip. The
protection level and write-protected units persist with the state (they are
option bytes).
"""

from __future__ import annotations

import enum
import json
import operator
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

from protocols.stm32rom.codec import ACK, NACK, SYNC, Command, SpecialErase, xor
from protocols.stm32rom.parts import F1, FLASH_BASE, PARTS, SRAM_BASE, Part
from simulators.mcu.options import FaultSpecError, LinkFaultSpec, SimOptions, parse_faults

#: What the simulated application reads as "jump to the ROM bootloader".
APP_ENTER_COMMAND = b"bootloader\n"
#: Every byte the application's UART receives is appended here (state dir), so tests can
#: check that a host sent the running app nothing it did not mean to.
APP_UART_LOG = "app-uart.bin"


class SimConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Model:
    """A simulated part: its product id, flash size and typical flash timings."""

    name: str
    pid: int
    flash_kib: int
    ram_kib: int
    bootloader_version: int
    erase_s_per_kib: float  # typical
    erase_s_min: float
    program_s_per_word: float  # typical, per 4 bytes
    system_block: tuple[int, int]  # readable [start, end) holding uid and flash size
    #: Read Memory may start in the system block only below this address (F4: the uid
    #: and flash-size registers lie past the OTP area, where the ROM refuses a start).
    system_read_starts_below: int
    option_bytes: tuple[int, bytes]
    mass_erase_s: float  # typical, the whole flash in one operation

    @property
    def part(self) -> Part:
        return PARTS[self.pid]

    def erase_time(self, size: int) -> float:
        return max(self.erase_s_min, self.erase_s_per_kib * size / 1024)


_F1_SYS = (0x1FFF_F000, 0x1FFF_F800)
_F1_OPT = (0x1FFF_F800, bytes.fromhex("a55aff00ff00ff00ff00ff00ff00ff00"))
_F4_SYS = (0x1FFF_0000, 0x1FFF_7B00)
#: End of the F4's OTP area (RM0090 3.8: OTP 0x1FFF7800, lock block 0x1FFF7A00-0x1FFF7A0F).
_F4_OTP_END = 0x1FFF_7A10
_F4_OPT = (0x1FFF_C000, bytes.fromhex("aaecffff0000ffff"))


def _f1(name: str, flash_kib: int) -> Model:
    # F103: 1 KiB pages, ~20 ms page erase, ~52.5 us per 16-bit half-word.
    # Mass erase ~20 ms (STM32F103x8/B datasheet, flash characteristics: tME).
    return Model(name, 0x410, flash_kib, 20, 0x22, 0.020, 0.020, 2 * 52.5e-6, _F1_SYS,
                 _F1_SYS[1], _F1_OPT, 0.020)  # fmt: skip


MODELS: dict[str, Model] = {
    "stm32f103": _f1("stm32f103", 128),
    "stm32f103x8": _f1("stm32f103x8", 64),
    # F407xG: 16/64/128 KiB sectors, ~1 s per 128 KiB, 16 us per 32-bit word.
    "stm32f407": Model(
        "stm32f407",
        0x413,
        1024,
        128,
        0x31,
        1.0 / 128,
        0.25,
        16e-6,
        _F4_SYS,
        _F4_OTP_END,
        _F4_OPT,
        8.0,  # bank mass erase at x32 parallelism, typical (STM32F407 datasheet: tME)
    ),
}
DEFAULT_MODEL = "stm32f103"


class FaultKind(enum.StrEnum):
    NACK = "nack"  # NACK this command code
    MUTE = "mute"  # hang: never answer again once this command arrives
    GARBAGE = "garbage"  # answer this command with noise
    OTHER = "other-answer"  # answer this command with Get's answer
    NOOP = "noop"  # ACK every stage but do nothing (Go stays put, Write programs nothing)
    LATE = "late"  # the first time only, answer after LATE_S (past the host's deadline)


#: How late a ``late=`` fault answers.
LATE_S = 1.5


#: Exit status of a simulator whose power was cut (``cut=N``), as a SIGKILL'd process's.
CUT_EXIT = 137


@dataclass(frozen=True, slots=True)
class Faults:
    by_command: dict[int, FaultKind] = field(default_factory=dict)
    #: Damaged or lost bytes on the UART, the same spec as the other simulators'.
    link: LinkFaultSpec = field(default_factory=LinkFaultSpec)
    #: ``cut=N``: the power fails halfway through the N-th flash operation (1-based: each
    #: Write Memory to flash, each page or sector of an erase, a mass erase).
    cut_at: int | None = None

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        out: dict[int, FaultKind] = {}
        link = LinkFaultSpec()
        cut_at: int | None = None
        for spec in specs:
            kind, sep, value = spec.partition("=")
            if kind == "cut":
                if not value.isdigit() or int(value) < 1:
                    raise SimConfigError(
                        f"bad --fault {spec!r}: cut=N, N the flash operation (1, 2, ...) "
                        "that the power fails in"
                    )
                cut_at = int(value)
                continue
            if kind in ("corrupt", "drop", "seed"):
                try:
                    link = parse_faults([spec], SimOptions(link=link)).link
                except FaultSpecError as exc:
                    raise SimConfigError(f"bad --fault {spec!r}: {exc}") from None
                continue
            try:
                fault = FaultKind(kind)
                code = int(value, 0)
            except ValueError:
                raise SimConfigError(
                    f"bad --fault {spec!r} for stm32-rom: use nack=|mute=|garbage=|"
                    "other-answer=|noop=|late= followed by a command code such as 0x31, "
                    "cut=N, or corrupt=RATE[:rx|tx|both], drop=RATE[:...], seed=N"
                ) from None
            if not sep or not 0 <= code <= 0xFF:
                raise SimConfigError(f"bad --fault {spec!r}: command code must be 0x00..0xff")
            out[code] = fault
        return cls(out, link, cut_at)


class Flash:
    """The flash array in a file; every change is written through (kill -9 = power cut).

    With ``cut_at`` the power fails during that operation (counted from 1): a
    program leaves its first half programmed, in the ascending order the ROM
    writes, and one half-word or word between old and new bits; an erase leaves
    each bit of the unit either as it was or erased, at random (seeded by N).
    Then the process exits at once with :data:`CUT_EXIT`.
    """

    def __init__(
        self, path: Path, size: int, *, halfword_pgerr: bool = False, cut_at: int | None = None
    ) -> None:
        self.size = size
        self._pgerr = halfword_pgerr
        self._cut_at = cut_at
        self._ops = 0
        new = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if new or os.fstat(self._fd).st_size != size:
            if not new:
                raise SimConfigError(f"{path} is not {size} bytes: state is from another model")
            os.pwrite(self._fd, b"\xff" * size, 0)

    def read(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def _cut_now(self) -> random.Random | None:
        self._ops += 1
        return random.Random(self._ops) if self._ops == self._cut_at else None

    def _power_fails(self, what: str) -> NoReturn:
        sys.stderr.write(f"power cut during flash operation {self._ops} ({what})\n")
        sys.stderr.flush()
        os._exit(CUT_EXIT)

    def erase(self, offset: int, n: int) -> None:
        rng = self._cut_now()
        if rng is None:
            os.pwrite(self._fd, b"\xff" * n, offset)
            return
        old = self.read(offset, n)
        os.pwrite(self._fd, bytes(b | rng.getrandbits(8) for b in old), offset)
        self._power_fails(f"erase of {n} bytes at {offset:#x}")

    def program(self, offset: int, data: bytes) -> None:
        rng = self._cut_now()
        old = self.read(offset, len(data))
        unit = 2 if self._pgerr else 4
        units = len(data) // unit
        done = units if rng is None else units // 2
        out = bytearray(old)
        for i in range(0, done * unit, unit):
            new = data[i : i + unit]
            if not self._pgerr:
                out[i : i + unit] = bytes(map(operator.and_, old[i : i + unit], new))
            elif old[i : i + 2] == b"\xff\xff" or new == b"\x00\x00":
                out[i : i + 2] = new  # PM0075 2.3.3: else PGERR, the half-word is skipped
        if rng is not None and done < units:
            i = done * unit  # the one being programmed: some of its bits cleared
            out[i : i + unit] = bytes(
                a & (b | rng.getrandbits(8))
                for a, b in zip(old[i : i + unit], data[i : i + unit], strict=True)
            )
        os.pwrite(self._fd, bytes(out), offset)
        if rng is not None:
            self._power_fails(f"program of {len(data)} bytes at {offset:#x}")

    def close(self) -> None:
        os.close(self._fd)


class Port(Protocol):
    """What the chip needs from its UART: paced byte reads and writes, and a clock."""

    async def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, once the last of them has arrived on the wire."""
        ...

    async def write(self, data: bytes) -> None:
        """Returns once the bytes have left on the wire (the ROM sends by polling)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class Chip:
    def __init__(
        self,
        state: Path,
        model: Model,
        *,
        boot0: bool,
        uid: bytes | None = None,
        flash_scale: float = 1.0,
        faults: Faults | None = None,
        rdp: bool | None = None,
    ) -> None:
        state.mkdir(parents=True, exist_ok=True)
        meta_path = state / "stm32rom.json"
        meta: dict[str, object]
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta["model"] != model.name:
                raise SimConfigError(f"state {state} holds a {meta['model']}, not a {model.name}")
            if uid is not None and bytes.fromhex(str(meta["uid"])) != uid:
                raise SimConfigError(f"state {state} holds uid {meta['uid']}")
            uid = bytes.fromhex(str(meta["uid"]))
        else:
            uid = uid if uid is not None else random.randbytes(12)
            if len(uid) != 12:
                raise SimConfigError("--uid: an STM32 unique id is 12 bytes (96 bits)")
            meta = {"model": model.name, "uid": uid.hex()}
        self._meta_path = meta_path
        self._meta = meta
        #: Option bytes: readout protection active (RDP level 1) and write-protected units.
        self.rdp = bool(meta.get("rdp", False)) if rdp is None else rdp
        wrp = meta.get("wrp", [])
        self.wrp: set[int] = {int(i) for i in wrp} if isinstance(wrp, list) else set()
        self.save_options()
        self.app_log = state / APP_UART_LOG
        self.model = model
        self.uid = uid
        self.boot0 = boot0
        self.scale = flash_scale
        self.faults = faults or Faults()
        self.late_done: set[int] = set()
        self.flash = Flash(state / "flash.bin", model.flash_kib * 1024,
                           halfword_pgerr=model.part.family is F1,
                           cut_at=self.faults.cut_at)  # fmt: skip
        self.ram = bytearray(model.ram_kib * 1024)
        self.sectors = model.part.sectors(model.flash_kib)
        self.system = self._system_block()
        self.extended = model.part.family is not F1

    def _system_block(self) -> bytearray:
        start, end = self.model.system_block
        block = bytearray(b"\xff" * (end - start))
        fam = self.model.part.family
        block[fam.uid_address - start : fam.uid_address - start + 12] = self.uid
        off = fam.flash_size_address - start
        block[off : off + 2] = self.model.flash_kib.to_bytes(2, "little")
        return block

    def save_options(self) -> None:
        """Persist the option bytes (RDP, WRP) with the state, as the part keeps them."""
        self._meta["rdp"] = self.rdp
        self._meta["wrp"] = sorted(self.wrp)
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._meta))
        tmp.replace(self._meta_path)

    @property
    def commands(self) -> bytes:
        """What Get lists: AN3155 Table 2's USART command set of bootloader v2.2 (F1) and
        v3.1 (F2/F4), which differ only in the erase command; the list is the same with
        readout protection active."""
        erase = Command.EXTENDED_ERASE if self.extended else Command.ERASE
        return bytes([Command.GET, Command.GET_VERSION, Command.GET_ID, Command.READ_MEMORY,
                      Command.GO, Command.WRITE_MEMORY, erase, Command.WRITE_PROTECT,
                      Command.WRITE_UNPROTECT, Command.READOUT_PROTECT,
                      Command.READOUT_UNPROTECT])  # fmt: skip

    # ------------------------------------------------------------- memory map

    def _in(self, start: int, end: int, lo: int, size: int) -> bool:
        return lo <= start and end <= lo + size

    def read_mem(self, address: int, n: int) -> bytes | None:
        end = address + n
        if self._in(address, end, FLASH_BASE, self.flash.size):
            return self.flash.read(address - FLASH_BASE, n)
        if self._in(address, end, SRAM_BASE, len(self.ram)):
            return bytes(self.ram[address - SRAM_BASE : end - SRAM_BASE])
        sys_lo, sys_hi = self.model.system_block
        if self._in(address, end, sys_lo, sys_hi - sys_lo):
            return bytes(self.system[address - sys_lo : end - sys_lo])
        opt_at, opt = self.model.option_bytes
        if self._in(address, end, opt_at, len(opt)):
            return opt[address - opt_at : end - opt_at]
        return None

    def read_start_ok(self, address: int) -> bool:
        """Whether Read Memory accepts ``address`` (checked before the length arrives).

        An F4's ROM refuses a start at the uid (0x1FFF7A10) or flash-size
        (0x1FFF7A22) register (ST community thread "STM32F401 Bootloader Read
        Memory command failed", 2014; stm32loader reads them from 0x1FFF7A00).
        """
        if self.model.system_read_starts_below <= address < self.model.system_block[1]:
            return False
        return self.read_mem(address, 1) is not None

    def app_present(self) -> bool:
        return self.flash.read(0, 4) != b"\xff\xff\xff\xff"

    # ------------------------------------------------------------- firmware

    async def run(self, port: Port) -> None:
        """Power on and run forever (until the process ends)."""
        in_bootloader = self.boot0
        while True:
            if in_bootloader:
                # Go starts the app; a system reset (after an option-byte change) boots
                # from where BOOT0 is strapped.
                went = await ROMBootloader(self, port).run()
                in_bootloader = not went and self.boot0
            else:
                await self._app(port)
                in_bootloader = True

    async def _app(self, port: Port) -> None:
        """The application: deaf to AN3155; jumps to the ROM on :data:`APP_ENTER_COMMAND`."""
        seen = b""
        alive = self.app_present()
        with self.app_log.open("ab", buffering=0) as log:
            while True:
                byte = await port.read(1)
                log.write(byte)
                seen = (seen + byte)[-len(APP_ENTER_COMMAND) :]
                if alive and seen == APP_ENTER_COMMAND:
                    return


class _Hang(Exception):
    pass


class _Reset(Exception):
    """The ROM generates a system reset (AN3155: after changing option bytes)."""


#: Commands the ROM NACKs at their command byte while readout protection is active
#: (AN3155 sections 3.4 to 3.11; Readout Unprotect, 3.12, is the way out).
RDP_REFUSED = frozenset(
    {Command.READ_MEMORY, Command.GO, Command.WRITE_MEMORY, Command.ERASE,
     Command.EXTENDED_ERASE, Command.WRITE_PROTECT, Command.WRITE_UNPROTECT,
     Command.READOUT_PROTECT}
)  # fmt: skip


class ROMBootloader:
    """The AN3155 command loop of one boot of the system memory."""

    def __init__(self, chip: Chip, port: Port) -> None:
        self.chip = chip
        self.port = port
        self.noop = False

    async def byte(self) -> int:
        return (await self.port.read(1))[0]

    async def send(self, *data: int | bytes) -> None:
        out = b"".join(bytes([d]) if isinstance(d, int) else d for d in data)
        await self.port.write(out)

    async def run(self) -> bool:
        """Returns True when Go starts the application, False on a system reset."""
        # Autobaud: only 0x7F sets the rate; anything else is a mis-measured start bit.
        while await self.byte() != SYNC:
            pass
        await self.send(ACK)
        try:
            while True:
                code, check = await self.port.read(2)
                if code ^ check != 0xFF:
                    await self.send(NACK)
                    continue
                if await self._command(code):
                    return True
        except _Reset:
            return False
        except _Hang:
            while True:
                await self.port.read(1)

    async def _command(self, code: int) -> bool:
        fault = self.chip.faults.by_command.get(code)
        if fault is FaultKind.MUTE:
            raise _Hang
        if fault is FaultKind.NACK or code not in self.chip.commands:
            await self.send(NACK)
            return False
        if self.chip.rdp and code in RDP_REFUSED:
            await self.send(NACK)
            return False
        if fault is FaultKind.GARBAGE:
            await self.send(bytes([0x55, 0xAA, 0x5A, 0xA5]))
            return False
        if fault is FaultKind.OTHER:
            code = Command.GET
        if fault is FaultKind.LATE and code not in self.chip.late_done:
            self.chip.late_done.add(code)
            await self.port.sleep(LATE_S)
        self.noop = fault is FaultKind.NOOP
        handler = {
            Command.GET: self._get,
            Command.GET_VERSION: self._get_version,
            Command.GET_ID: self._get_id,
            Command.READ_MEMORY: self._read_memory,
            Command.GO: self._go,
            Command.WRITE_MEMORY: self._write_memory,
            Command.ERASE: self._erase,
            Command.EXTENDED_ERASE: self._extended_erase,
            Command.WRITE_PROTECT: self._write_protect,
            Command.WRITE_UNPROTECT: self._write_unprotect,
            Command.READOUT_PROTECT: self._readout_protect,
            Command.READOUT_UNPROTECT: self._readout_unprotect,
        }[Command(code)]
        return await handler()

    async def _get(self) -> bool:
        cmds = self.chip.commands
        await self.send(ACK, len(cmds), self.chip.model.bootloader_version, cmds, ACK)
        return False

    async def _get_version(self) -> bool:
        await self.send(ACK, self.chip.model.bootloader_version, 0, 0, ACK)
        return False

    async def _get_id(self) -> bool:
        await self.send(ACK, 1, self.chip.model.pid.to_bytes(2, "big"), ACK)
        return False

    async def _address(self) -> int | None:
        raw = await self.port.read(5)
        if xor(raw) != 0:
            return None
        return int.from_bytes(raw[:4], "big")

    async def _read_memory(self) -> bool:
        await self.send(ACK)
        address = await self._address()
        if address is None or not self.chip.read_start_ok(address):
            await self.send(NACK)
            return False
        await self.send(ACK)
        n, check = await self.port.read(2)
        data = self.chip.read_mem(address, n + 1)
        if n ^ check != 0xFF or data is None:
            await self.send(NACK)
            return False
        await self.send(ACK, data)
        return False

    async def _go(self) -> bool:
        await self.send(ACK)
        address = await self._address()
        chip = self.chip
        if address is None or (
            chip.read_mem(address, 4) is None or address < FLASH_BASE  # flash or SRAM only
        ):
            await self.send(NACK)
            return False
        await self.send(ACK)
        return not self.noop

    async def _write_memory(self) -> bool:
        await self.send(ACK)
        address = await self._address()
        chip = self.chip
        in_flash = address is not None and FLASH_BASE <= address < FLASH_BASE + chip.flash.size
        in_ram = address is not None and SRAM_BASE <= address < SRAM_BASE + len(chip.ram)
        if address is None or not (in_flash or in_ram) or (in_flash and address % 4):
            await self.send(NACK)
            return False
        await self.send(ACK)
        n = await self.byte()
        data = await self.port.read(n + 1)
        check = await self.byte()
        end = address + n + 1
        if (
            xor(data, n) != check
            or (in_flash and (n + 1) % 4)
            or (in_flash and end > FLASH_BASE + chip.flash.size)
            or (in_ram and end > SRAM_BASE + len(chip.ram))
        ):
            await self.send(NACK)
            return False
        if in_flash and self._protected(address, end):
            await self.send(NACK)  # the write fails in the flash interface (WRPRTERR)
            return False
        if self.noop:
            pass
        elif in_flash:
            await self.port.sleep(len(data) / 4 * chip.model.program_s_per_word * chip.scale)
            chip.flash.program(address - FLASH_BASE, data)
        else:
            chip.ram[address - SRAM_BASE : end - SRAM_BASE] = data
        await self.send(ACK)
        return False

    def _protected(self, start: int, end: int) -> bool:
        return any(
            a < end and a + size > start
            for i, (a, size) in enumerate(self.chip.sectors)
            if i in self.chip.wrp
        )

    async def _mass_erase(self) -> bool:
        """The whole flash in one operation, as Erase 0xFF / Extended Erase 0xFFFF do."""
        chip = self.chip
        if chip.wrp:
            return False
        await self.port.sleep(chip.model.mass_erase_s * chip.scale)
        chip.flash.erase(0, chip.flash.size)
        return True

    async def _erase_units(self, units: list[int]) -> bool:
        """Erase ``units``; False (nothing erased) if one of them is write-protected."""
        chip = self.chip
        if chip.wrp & set(units):
            return False
        for i in units:
            addr, size = chip.sectors[i]
            await self.port.sleep(chip.model.erase_time(size) * chip.scale)
            chip.flash.erase(addr - FLASH_BASE, size)
        return True

    async def _erase(self) -> bool:
        await self.send(ACK)
        n = await self.byte()
        if n == 0xFF:  # global erase
            if await self.byte() != 0x00:
                await self.send(NACK)
                return False
            ok = await self._mass_erase()
            await self.send(ACK if ok else NACK)
            return False
        pages = list(await self.port.read(n + 1))
        check = await self.byte()
        if xor(pages, n) != check or any(p >= len(self.chip.sectors) for p in pages):
            await self.send(NACK)
            return False
        ok = await self._erase_units(pages)
        await self.send(ACK if ok else NACK)
        return False

    async def _extended_erase(self) -> bool:
        await self.send(ACK)
        raw = await self.port.read(2)
        n = int.from_bytes(raw, "big")
        if n >= 0xFFF0:
            check = await self.byte()
            if xor(raw) != check or n != SpecialErase.MASS:  # one bank: no bank erases
                await self.send(NACK)
                return False
            ok = await self._mass_erase()
            await self.send(ACK if ok else NACK)
            return False
        body = await self.port.read(2 * (n + 1))
        check = await self.byte()
        pages = [int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2)]
        if xor(raw + body) != check or any(p >= len(self.chip.sectors) for p in pages):
            await self.send(NACK)
            return False
        ok = await self._erase_units(pages)
        await self.send(ACK if ok else NACK)
        return False

    # ------------------------------------------------------------- option bytes

    async def _write_protect(self) -> bool:
        """AN3155 3.9: ACK, N and N + 1 unit numbers with checksum, ACK, system reset."""
        await self.send(ACK)
        n = await self.byte()
        units = list(await self.port.read(n + 1))
        check = await self.byte()
        if xor(units, n) != check or any(u >= len(self.chip.sectors) for u in units):
            await self.send(NACK)
            return False
        self.chip.wrp |= set(units)
        self.chip.save_options()
        await self.send(ACK)
        raise _Reset

    async def _write_unprotect(self) -> bool:
        """AN3155 3.10: ACK, every unit unprotected, ACK, system reset."""
        await self.send(ACK)
        self.chip.wrp.clear()
        self.chip.save_options()
        await self.send(ACK)
        raise _Reset

    async def _readout_protect(self) -> bool:
        """AN3155 3.11: ACK, RDP level 1 set, ACK, system reset."""
        await self.send(ACK)
        self.chip.rdp = True
        self.chip.save_options()
        await self.send(ACK)
        raise _Reset

    async def _readout_unprotect(self) -> bool:
        """AN3155 3.12: ACK, mass erase (whatever is write-protected), RDP off, ACK, reset."""
        chip = self.chip
        await self.send(ACK)
        await self.port.sleep(chip.model.mass_erase_s * chip.scale)
        chip.flash.erase(0, chip.flash.size)
        chip.rdp = False
        chip.wrp.clear()  # the option bytes are erased with the protection
        chip.save_options()
        await self.send(ACK)
        raise _Reset

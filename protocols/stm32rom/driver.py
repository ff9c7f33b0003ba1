"""The ``stm32-rom`` driver: the STM32 ROM system bootloader (AN3155) behind the seam.

The ROM loader only reads, writes, erases and jumps; everything a gateway needs
beyond that is done here: the device id is the part's 96-bit unique id read
from its family's documented address, the installed version is a
:mod:`~protocols.stm32rom.record` in the last flash page that this driver writes
last, and an install is verified by reading the image back before Go.

This module is the one place that turns the codec's exceptions into error
codes and kinds (:func:`error_code`; the table is in docs/bootloaders.md).

Per-port keys in ``DriverOptions.extra`` (all optional):

``reset_line``, ``boot0_line``
    ``"dtr"``, ``"rts"``, ``"gpio:CHIP:LINE"`` (a Linux GPIO character-device line,
    :mod:`~protocols.stm32rom.lines`) or ``"none"``: what drives NRST / BOOT0.
``reset_active_low`` (default true), ``boot0_active_high`` (default true)
    Pin levels that reset / select the system bootloader. An asserted line
    drives a USB-UART adapter's pin low.
``boot_delay_ms`` (default 50)
    Time the ROM needs after reset before it can measure the 0x7F.
``enter_command``
    Text the running application understands as "jump to the ROM bootloader";
    the way in when no modem lines are wired (and on the simulator's pty).
``compat``
    ``manufacturer:model:hwrev`` of the board (the ROM only knows the part).
``erase`` (default ``pages``)
    ``mass``: erase the whole flash with one command instead of the image's pages
    or sectors (an F1 takes 20-40 ms for all of it instead of that per page), and
    with it any data the application keeps in flash.
``boot_check`` (default ``none``)
    ``get-version``: after Go, send Get Version and expect silence, to catch a
    loader that ACKed Go and stayed (the app receives those two bytes).
``unprotect`` (default false)
    On a readout-protected part, ``install`` first sends Readout Unprotect, which
    mass-erases the whole flash (AN3155 3.12), then installs. Without it such a
    part fails with ``MCU_READOUT_PROTECTED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from protocols.driver import (
    Capability,
    DeviceFacts,
    DriverError,
    DriverOptions,
    DriverSpec,
    Image,
    InstallResult,
    NoAnswer,
    Outcome,
    Progress,
    ProgressFn,
    Safety,
    SlotFacts,
    SlotState,
    Step,
    no_progress,
)
from protocols.errors import (
    DeviceTimeout,
    LocalProtocolError,
    PortNotFound,
    ProtocolError,
    RemoteProtocolError,
    TransportDisconnected,
)
from protocols.failures import Code, DriverCode
from protocols.mcugw.timing import HOST_MARGIN_S
from protocols.stm32rom import codec, layout, record
from protocols.stm32rom.codec import ACK, NACK, SYNC, BadReply, Command, Exchange, Nack
from protocols.stm32rom.codes import Stm32Code
from protocols.stm32rom.commands import Commands, Job
from protocols.stm32rom.lines import (
    GpioOpener,
    LineError,
    LineSpec,
    Pins,
    libgpiod_line,
    parse_line,
)
from protocols.stm32rom.parts import FLASH_BASE, Part, part
from protocols.transport import SerialSettings, Transport, converse

NAME = "stm32-rom"

#: 8E1: start, 8 data, parity, stop.
BITS_PER_BYTE = 11
#: The ROM answers within microseconds; this covers a USB-serial adapter's latency.
TURNAROUND_S = 0.010
#: NRST low time: far above the part's 20 us, long enough for a slow USB adapter.
RESET_PULSE_S = 0.010
SYNC_ATTEMPTS = 3
#: Write Memory retries after a NACK (a damaged block's checksum).
WRITE_RETRIES = 2
#: With ``boot_check = get-version``: how long past the link's round trip a loader that
#: stayed may take to answer (it answers in microseconds; this covers USB adapters).
BOOT_CHECK_MARGIN_S = 0.05
#: Erase at most this much per command, so progress moves and deadlines stay short.
ERASE_BATCH = 32 * 1024


class UnknownPart(RemoteProtocolError):
    pass


class ReadbackMismatch(RemoteProtocolError):
    pass


class BootFailed(RemoteProtocolError):
    pass


class NoApplication(RemoteProtocolError):
    pass


class ReadoutProtected(RemoteProtocolError):
    """Get lists Read Memory but the loader NACKs it at its command byte (AN3155 3.4)."""

    def __init__(self, found: Part, pid: int) -> None:
        super().__init__(
            f"{found.title} (pid {pid:#05x}) is readout-protected (RDP level 1): its ROM "
            "bootloader answers Get but refuses Read Memory, Write Memory, Go and Erase, so "
            "neither its flash (application and version record) nor its unique id can be "
            "read or written. Removing the protection (Readout Unprotect) mass-erases the "
            "whole flash, application and data included; to do that and then install, set "
            "the port's driver option unprotect = yes"
        )
        self.part = found
        self.pid = pid


def error_code(exc: ProtocolError) -> Code:
    """The error code (and with it the kind) for one of this protocol's exceptions."""
    if isinstance(exc, DeviceTimeout):
        return DriverCode.TIMEOUT
    if isinstance(exc, TransportDisconnected | PortNotFound):
        return DriverCode.DISCONNECTED
    if isinstance(exc, Nack):
        return Stm32Code.NACK
    if isinstance(exc, ReadbackMismatch):
        return DriverCode.VERIFY_FAILED
    if isinstance(exc, UnknownPart):
        return Stm32Code.UNSUPPORTED_PART
    if isinstance(exc, BootFailed):
        return DriverCode.BOOT_FAILED
    if isinstance(exc, NoApplication):
        return DriverCode.NO_APP
    if isinstance(exc, ReadoutProtected):
        return Stm32Code.READOUT_PROTECTED
    if isinstance(exc, LocalProtocolError):
        return DriverCode.IMAGE_REJECTED
    # Answers that are not what the command allows: damaged bytes, in practice.
    return DriverCode.PROTOCOL_ERROR


@dataclass(frozen=True, slots=True)
class Wiring:
    """How RESET and BOOT0 are reached on this port (``DriverOptions.extra``)."""

    reset_line: LineSpec | None = None
    boot0_line: LineSpec | None = None
    reset_active_low: bool = True
    boot0_active_high: bool = True
    boot_delay_s: float = 0.05
    enter_command: bytes = b""
    compat: str | None = None
    unprotect: bool = False
    boot_check: Literal["none", "get-version"] = "none"
    erase: Literal["pages", "mass"] = "pages"

    @classmethod
    def from_extra(cls, extra: Mapping[str, str | int | bool]) -> Wiring:
        def line(key: str) -> LineSpec | None:
            try:
                return parse_line(str(extra.get(key, "none")))
            except LineError as exc:
                raise DriverError(DriverCode.CONFIG_INVALID, f"{key} = {exc}") from exc

        def flag(key: str, default: bool) -> bool:
            value = extra.get(key, default)
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise DriverError(DriverCode.CONFIG_INVALID, f"{key} = {value!r} is not true/false")

        reset, boot0 = line("reset_line"), line("boot0_line")
        if reset is not None and reset == boot0:
            raise DriverError(DriverCode.CONFIG_INVALID, "reset_line and boot0_line are one line")
        try:
            delay = float(extra.get("boot_delay_ms", 50)) / 1000
        except ValueError as exc:
            raise DriverError(DriverCode.CONFIG_INVALID, "boot_delay_ms is not a number") from exc
        check = str(extra.get("boot_check", "none")).lower()
        if check not in ("none", "get-version"):
            raise DriverError(
                DriverCode.CONFIG_INVALID, f"boot_check = {check!r}: use none or get-version"
            )
        boot_check: Literal["none", "get-version"] = "none" if check == "none" else "get-version"
        erase_how = str(extra.get("erase", "pages")).lower()
        if erase_how not in ("pages", "mass"):
            raise DriverError(
                DriverCode.CONFIG_INVALID, f"erase = {erase_how!r}: use pages or mass"
            )
        erase: Literal["pages", "mass"] = "pages" if erase_how == "pages" else "mass"
        compat = extra.get("compat")
        if compat:
            parts_ = str(compat).split(":")
            if len(parts_) != 3 or not parts_[0] or not parts_[1]:
                raise DriverError(
                    DriverCode.CONFIG_INVALID, f"compat = {compat!r}: use manufacturer:model:hwrev"
                )
        return cls(
            reset_line=reset,
            boot0_line=boot0,
            reset_active_low=flag("reset_active_low", True),
            boot0_active_high=flag("boot0_active_high", True),
            boot_delay_s=max(0.0, delay),
            enter_command=str(extra.get("enter_command", "")).encode(),
            compat=str(compat) if compat else None,
            unprotect=flag("unprotect", False),
            boot_check=boot_check,
            erase=erase,
        )


@dataclass(frozen=True, slots=True)
class Target:
    """What one connection learned about the part."""

    info: codec.BootloaderInfo
    pid: int
    part: Part
    uid: bytes
    flash_kib: int
    sectors: tuple[tuple[int, int], ...]  # (address, size) of every erase unit
    record: record.VersionRecord | None
    record_state: str
    #: Where the valid record was read (None: no valid record).
    record_address: int | None = None
    #: Every place holding a record that decodes; an install invalidates them all first.
    records_at: tuple[int, ...] = ()
    #: The fixed record place (paged parts) reads all 0xFF.
    record_blank: bool = False

    @property
    def capacity(self) -> int:
        return layout.capacity(self.part, self.sectors)


def _unit_of(t: Target, address: int) -> int:
    return next(i for i, (a, s) in enumerate(t.sectors) if a <= address < a + s)


class Stm32RomDriver:
    """AN3155 over one transport; every public method translates errors once."""

    def __init__(
        self, transport: Transport, options: DriverOptions, gpio: GpioOpener = libgpiod_line
    ) -> None:
        self.transport = transport
        self.options = options
        self.wiring = Wiring.from_extra(options.extra)
        self.pins = Pins(transport, gpio)
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.retransmits = 0
        self._synced = False
        #: How this connection got the loader from a running app, to put the app back.
        self._entered_from_app: Literal["lines", "command"] | None = None
        self._stale = False  # a failed exchange may have left late answers on the link
        self._info: codec.BootloaderInfo | None = None
        self._sync_clean = False
        self._app_erased = False  # between the erase and the new version record

    # ------------------------------------------------------------- link

    def _wire(self, nbytes: int) -> float:
        baud = self.options.baud
        return nbytes * BITS_PER_BYTE / baud if baud > 0 else 0.0

    def _deadline(self, sent: int, expected: int, work_s: float = 0.0) -> float:
        budget = self._wire(sent) + self._wire(expected) + 2 * TURNAROUND_S + work_s
        return asyncio.get_running_loop().time() + budget + HOST_MARGIN_S

    async def _write(self, data: bytes) -> None:
        await self.transport.write(data)
        self.tx_bytes += len(data)

    async def _read(self, deadline: float) -> bytes:
        async with asyncio.timeout_at(deadline):
            data = await self.transport.read()
        self.rx_bytes += len(data)
        return data

    async def _commands(self, jobs: Iterable[Job]) -> None:
        """Run commands back to back, each stage after the previous one's answer."""
        run = Commands(jobs, self._deadline)
        try:
            await converse(self.transport, run)
        except TimeoutError:
            ex = run.exchange
            assert ex is not None
            raise DeviceTimeout(
                f"{ex.command.name}: no answer to its {ex.stage.name} (0x{ex.command:02x}) in time"
            ) from None
        finally:
            self.tx_bytes += run.tx_bytes
            self.rx_bytes += run.rx_bytes
            self.retransmits += run.resent

    async def _run(self, ex: Exchange, work_s: float = 0.0) -> list[bytes]:
        """Walk one command through its stages; ``work_s`` is the device's time after the last."""
        await self._commands([Job(lambda: ex, work_s)])
        return ex.payloads

    async def _sync(self, attempts: int = SYNC_ATTEMPTS) -> bool:
        """Send 0x7F until ACK (fresh loader) or NACK (one already synced) comes back.

        A loader that was synced before takes the first 0x7F as a command byte and
        NACKs the second, hence more than one attempt.
        """
        for _ in range(attempts):
            await self._write(bytes([SYNC]))
            deadline = self._deadline(1, 1)
            while True:
                try:
                    data = await self._read(deadline)
                except TimeoutError:
                    break
                # An app's chatter may come first; the loader's answer is the last byte.
                if data[-1] in (ACK, NACK):
                    self._synced = True
                    # A lone ACK/NACK is a loader; one at the end of a stream may be noise.
                    self._sync_clean = len(data) == 1
                    return True
        return False

    # ------------------------------------------------------------- reset lines

    def _drive(self, line: LineSpec, active: bool, active_high: bool) -> bool:
        """Put a pin in its active (or inactive) state; False if the port has no such line."""
        try:
            return self.pins.drive(line, active == active_high)
        except LineError as exc:
            key = "reset_line" if line == self.wiring.reset_line else "boot0_line"
            raise DriverError(DriverCode.CONFIG_INVALID, f"{key} = {line}: {exc}") from exc

    async def _reset(self, *, boot0: bool) -> bool:
        """Pulse RESET with BOOT0 set as asked; False if this port has no such lines."""
        w = self.wiring
        if w.reset_line is None:
            return False
        if w.boot0_line is not None and not self._drive(w.boot0_line, boot0, w.boot0_active_high):
            return False
        if not self._drive(w.reset_line, True, not w.reset_active_low):
            return False
        await asyncio.sleep(RESET_PULSE_S)  # the pulse itself, not a wait for a state
        self._drive(w.reset_line, False, not w.reset_active_low)
        self._synced = False
        await asyncio.sleep(w.boot_delay_s)  # the ROM starts before it can measure 0x7F
        return True

    # ------------------------------------------------------------- steps

    async def _drain(self) -> None:
        """Drop late answers of a failed exchange, so they are not taken for the next one."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        quiet = self._wire(16) + TURNAROUND_S + 0.05
        while loop.time() < end:
            try:
                await self._read(min(end, loop.time() + quiet))
            except TimeoutError:
                break
        self._stale = False

    async def _connect(self) -> None:
        """Reach the ROM loader and read Get, realigning if the loader is out of step."""
        if self._synced:
            return
        if self._stale:
            await self._drain()
        await self._reach()
        for attempt in range(SYNC_ATTEMPTS):
            try:
                self._info = codec.parse_get(await self._run(codec.get()))
                return
            except (Nack, BadReply) as exc:
                if attempt == SYNC_ATTEMPTS - 1:
                    if self._info is None and not self._sync_clean:
                        # Something echoed an ACK-like byte but never spoke AN3155: garbage
                        # or another protocol, not a loader that failed.
                        raise NoAnswer(
                            f"{self.transport.name} answers 0x7F but not Get ({exc}): "
                            "not an STM32 ROM bootloader"
                        ) from exc
                    raise
            # A late answer or half a command left the loader one byte out of step: each
            # lone 0x7F answered ends on a command boundary, so sync again and retry.
            self._synced = False
            await self._drain()
            if not await self._sync():
                raise NoAnswer(f"the loader on {self.transport.name} went silent while syncing")

    async def _reach(self) -> None:
        self._entered_from_app = None
        if await self._reset(boot0=True):
            self._entered_from_app = "lines"  # a reset ends whatever ran before
            if await self._sync():
                return
            raise NoAnswer(f"no answer to 0x7F on {self.transport.name} after a reset with BOOT0")
        # Two tries tell an app (silent to both) from a loader synced before (NACKs the
        # second); only an app may be sent the enter command, a loader would read commands.
        if await self._sync(2 if self.wiring.enter_command else SYNC_ATTEMPTS):
            return
        if self.wiring.enter_command:
            await self._write(self.wiring.enter_command)
            if await self._sync():
                self._entered_from_app = "command"
                return
        hint = (
            ""
            if self.wiring.enter_command
            else "; if the application runs, wire reset_line/boot0_line or set enter_command"
        )
        raise NoAnswer(f"no answer to 0x7F on {self.transport.name}{hint}")

    async def _read_memory(self, address: int, length: int) -> bytes:
        out = bytearray()

        def keep(payloads: Sequence[bytes]) -> None:
            out.extend(payloads[0])

        def jobs() -> Iterator[Job]:
            for at in range(address, address + length, codec.MAX_BLOCK):
                n = min(codec.MAX_BLOCK, address + length - at)
                yield Job(functools.partial(codec.read_memory, at, n), check=keep)

        await self._commands(jobs())
        return bytes(out)

    async def _probe(self, *, for_install: bool = False) -> Target:
        info = self._info
        assert info is not None  # _connect read it
        pid = codec.parse_get_id(await self._run(codec.get_id()))
        found = part(pid)
        if found is None:
            raise UnknownPart(f"product id {pid:#05x} is not in the stm32-rom part table")
        fam = found.family
        # One read covers both registers.
        base, length = fam.id_block
        try:
            block = await self._read_memory(base, length)
        except Nack as exc:
            if exc.stage != "command" or Command.READ_MEMORY not in info.commands:
                raise
            # Get lists Read Memory, yet its command byte is refused. A damaged byte is
            # refused once; readout protection (AN3155 3.4) every time.
            try:
                block = await self._read_memory(base, length)
            except Nack as again:
                if again.stage == "command":
                    raise ReadoutProtected(found, pid) from again
                raise
        uid = block[fam.uid_address - base : fam.uid_address - base + 12]
        off = fam.flash_size_address - base
        kib = int.from_bytes(block[off : off + 2], "little")
        if kib in (0, 0xFFFF):
            kib = found.default_flash_kib
        sectors = tuple(found.sectors(kib))
        t = Target(info, pid, found, uid, kib, sectors, None, "")
        return await (self._record_place(t) if for_install else self._find_record(t))

    async def _record_place(self, t: Target) -> Target:
        """What an install needs to know of the old record: on a paged part, only its first word.

        The record's page is written by this driver alone, in one Write Memory whose
        words the ROM programs in ascending order, so an erased first word means a blank
        place: the record is programmed without erasing the page (and if foreign bytes
        prove that wrong, :meth:`_place_record` erases it then). Anything else there is
        erased first, before any image byte changes. The install reads 4 bytes where
        :meth:`_find_record` reads the whole record.
        """
        slots = layout.candidate_slots(t.part, t.sectors)
        if len(slots) > 1:
            return await self._find_record(t)
        (at,) = slots
        head = await self._read_memory(at, 4)
        if head == b"\xff" * 4:
            return dataclasses.replace(
                t, record_state="no version record (erased flash)", record_blank=True
            )
        return dataclasses.replace(
            t,
            record_state="not read (the install erases its page first)",
            records_at=(at,) if head == record.MAGIC else (),
        )

    async def _find_record(self, t: Target) -> Target:
        """Find the record: the first valid one the layout allows, else the legacy place.

        Every install retires the record it found before it erases anything, so a part
        holds at most one and the first found is the one. On a sectored part, whose
        first sector every install erases first or retires records before, an erased
        first word means no record anywhere; elsewhere a 4-byte read of each place's
        magic decides whether the whole record is worth reading.
        """
        slots = layout.candidate_slots(t.part, t.sectors)
        legacy = layout.legacy_slot(t.part, t.sectors)
        many = len(slots) > 1
        if many and await self._read_memory(FLASH_BASE, 4) == b"\xff" * 4:
            return dataclasses.replace(t, record_state="no version record (erased flash)")
        errors: list[str] = []
        for at in [*slots, *([legacy] if legacy is not None else [])]:
            if many and await self._read_memory(at, 4) != record.MAGIC:
                continue
            raw = await self._read_memory(at, record.SIZE)
            try:
                rec = record.decode(raw)
            except record.RecordError as exc:
                errors.append(str(exc))
                if not many and raw == b"\xff" * record.SIZE:
                    # Only the driver writes this page: blank here means blank enough to
                    # program the next record without erasing the page first.
                    t = dataclasses.replace(t, record_blank=True)
                continue
            # A record belongs where its own image size puts it; elsewhere it is app data.
            if at == legacy:
                if rec.size > legacy - FLASH_BASE:
                    continue
                state = "valid (at the start of the last sector)"
            elif layout.record_slot(t.part, t.sectors, rec.size) != at:
                continue
            else:
                state = "valid"
            return dataclasses.replace(
                t, record=rec, record_state=state, record_address=at, records_at=(at,)
            )
        damaged = [e for e in errors if "damaged" in e]
        return dataclasses.replace(
            t, record_state=(damaged or errors or ["no version record (none found)"])[0]
        )

    def _facts(self, t: Target, *, in_bootloader: bool) -> DeviceFacts:
        model = t.part.model
        compat = self.wiring.compat or f"st:{model}:"
        model = compat.split(":")[1]  # the compatibility string's model is the model
        rec = t.record
        slot = SlotFacts(
            index=0,
            state=SlotState.CONFIRMED if rec else SlotState.INVALID,
            version=rec.version if rec else "",
            size=rec.size if rec else 0,
            sha256=rec.sha256.hex() if rec else "",
            running=rec is not None and not in_bootloader,
        )
        return DeviceFacts(
            driver=NAME,
            uid=t.uid.hex(),
            model=model,
            compat=compat,
            bootloader_version=t.info.version_text,
            protocol_version=f"AN3155 {t.info.version_text}",
            installed_version=rec.version if rec else None,
            capacity=t.capacity,
            safety=Safety.SINGLE_SLOT,
            capabilities=frozenset({Capability.READBACK}),
            slots=(slot,),
            in_bootloader=in_bootloader,
            details={
                "part": t.part.title,
                "pid": f"{t.pid:#05x}",
                "family": t.part.family.name,
                "flash_kib": t.flash_kib,
                "erase_command": f"{t.info.erase_command:#04x}",
                "record_address": (
                    f"{t.record_address:#010x}" if t.record_address is not None else "none"
                ),
                "record": t.record_state,
            },
        )

    def _protected_facts(self, exc: ReadoutProtected) -> DeviceFacts:
        """Facts of a readout-protected part (``unprotect`` set): the uid is unreadable."""
        info = self._info
        assert info is not None
        compat = self.wiring.compat or f"st:{exc.part.model}:"
        kib = exc.part.default_flash_kib
        return DeviceFacts(
            driver=NAME,
            uid="",
            model=compat.split(":")[1],
            compat=compat,
            bootloader_version=info.version_text,
            protocol_version=f"AN3155 {info.version_text}",
            installed_version=None,
            capacity=layout.capacity(exc.part, exc.part.sectors(kib)),
            safety=Safety.SINGLE_SLOT,
            capabilities=frozenset({Capability.READBACK}),
            slots=(SlotFacts(index=0, state=SlotState.INVALID),),
            in_bootloader=True,
            details={
                "part": exc.part.title,
                "pid": f"{exc.pid:#05x}",
                "family": exc.part.family.name,
                "readout_protection": "active (RDP level 1): install unprotects (mass erase)",
            },
        )

    async def _unprotect(self, found: Part, progress: ProgressFn) -> None:
        """Readout Unprotect (AN3155 3.12): the whole flash is erased, then the part resets."""
        total = found.default_flash_kib * 1024
        progress(Progress(Step.ERASE, 0, total))
        self._app_erased = True
        await self._run(codec.readout_unprotect(), found.family.mass_erase_s)
        # The option bytes take effect at the reset the ROM makes: sync afresh.
        self._synced = False
        self._info = None
        if await self._reset(boot0=True):
            self._entered_from_app = "lines"
        else:
            self._entered_from_app = None
        if not await self._sync():
            raise NoAnswer(
                f"no answer to 0x7F on {self.transport.name} after Readout Unprotect reset the "
                "part (its flash is now blank): strap BOOT0 high or wire reset_line/boot0_line"
            )
        self._info = codec.parse_get(await self._run(codec.get()))
        progress(Progress(Step.ERASE, total, total))

    async def _invalidate(self, t: Target, units: Sequence[int]) -> list[int]:
        """Make every record on the part stop decoding before any image byte changes.

        Returns ``units`` in the order to erase them: a record in a unit the install
        erases goes with its unit, erased first; one outside (a longer image's, or the
        legacy place) has its magic programmed to zeros, which flash allows unerased.
        """
        self._app_erased = True  # from here until the new record the device says "no app"
        first: list[int] = []
        for at in t.records_at:
            unit = _unit_of(t, at)
            if unit in units:
                first.append(unit)
            else:
                await self._write_block(t, at, b"\x00" * 4)
        return [*dict.fromkeys(first), *(u for u in units if u not in first)]

    async def _mass_erase(self, t: Target, progress: ProgressFn) -> None:
        """The whole flash in one command (``erase = mass``): every record goes with it."""
        total = t.flash_kib * 1024
        progress(Progress(Step.ERASE, 0, total))
        self._app_erased = True
        work = t.part.family.mass_erase_s
        if t.info.erase_command is Command.EXTENDED_ERASE:
            await self._run(codec.extended_erase(codec.SpecialErase.MASS), work)
        else:
            await self._run(codec.erase(None), work)
        progress(Progress(Step.ERASE, total, total))

    async def _erase(self, t: Target, units: Sequence[int], progress: ProgressFn) -> None:
        total = sum(t.sectors[i][1] for i in units)
        done = 0
        progress(Progress(Step.ERASE, 0, total))
        batch: list[int] = []
        size = 0
        for n, i in enumerate(units):
            batch.append(i)
            size += t.sectors[i][1]
            if size < ERASE_BATCH and n + 1 < len(units) and len(batch) < codec.MAX_ERASE_PAGES:
                continue
            work = sum(t.part.family.erase_time(t.sectors[j][1]) for j in batch)
            if t.info.erase_command is Command.EXTENDED_ERASE:
                await self._run(codec.extended_erase(batch), work)
            else:
                await self._run(codec.erase(batch), work)
            done += size
            progress(Progress(Step.ERASE, done, total))
            batch, size = [], 0

    @staticmethod
    def _write_job(
        t: Target, address: int, data: bytes, check: Callable[[Sequence[bytes]], None] | None = None
    ) -> Job:
        """Write Memory of one block, sent again after a NACK (a damaged block's checksum)."""
        data += b"\xff" * (-len(data) % 4)  # flash takes whole words; 0xFF leaves bits erased
        work = len(data) // 4 * t.part.family.program_s_per_word
        make = functools.partial(codec.write_memory, address, data)
        return Job(make, work, resends=WRITE_RETRIES, check=check)

    async def _write_block(self, t: Target, address: int, data: bytes) -> None:
        await self._commands([self._write_job(t, address, data)])

    def _image_writes(self, t: Target, data: bytes, progress: ProgressFn) -> Iterator[Job]:
        total = len(data)

        def report(_payloads: Sequence[bytes], end: int) -> None:
            progress(Progress(Step.WRITE, end, total))

        for off in range(0, total, codec.MAX_BLOCK):
            end = min(off + codec.MAX_BLOCK, total)
            check = functools.partial(report, end=end)
            yield self._write_job(t, FLASH_BASE + off, data[off:end], check)

    @staticmethod
    def _image_reads(data: bytes, progress: ProgressFn) -> Iterator[Job]:
        """Read Memory of every block, each compared with what was written."""
        total = len(data)

        def compare(payloads: Sequence[bytes], off: int) -> None:
            (got,) = payloads
            want = data[off : off + len(got)]
            if got != want:
                bad = next(i for i in range(len(got)) if got[i] != want[i])
                raise ReadbackMismatch(
                    f"read back differs at {FLASH_BASE + off + bad:#010x}: "
                    f"{got[bad]:#04x}, wrote {want[bad]:#04x}"
                )
            progress(Progress(Step.CHECK, off + len(got), total))

        for off in range(0, total, codec.MAX_BLOCK):
            n = min(codec.MAX_BLOCK, total - off)
            yield Job(functools.partial(codec.read_memory, FLASH_BASE + off, n),
                      check=functools.partial(compare, off=off))  # fmt: skip

    async def _place_record(self, t: Target, slot: int, data: bytes, *, erased: bool) -> None:
        """Write the record and read it back; a place taken for blank that was not is erased.

        ``erased``: this install erased the record's unit. If not, the place was judged
        blank from its first word (paged parts) or from no record being known there, and
        foreign bytes show up here: an F1 skips non-erased half-words and still ACKs
        (PM0075 2.3.3), an F4 clears bits. Its unit is then erased and the record written
        again; until then it does not decode, so the device claims no version.
        """
        try:
            await self._write_block(t, slot, data)
            if await self._read_memory(slot, record.SIZE) == data:
                return
        except Nack as exc:
            if erased or exc.stage != "data":
                raise
        if not erased:
            await self._erase(t, [_unit_of(t, slot)], no_progress)
            await self._write_block(t, slot, data)
            if await self._read_memory(slot, record.SIZE) == data:
                return
        raise ReadbackMismatch("version record read back differs from what was written")

    async def _start_app(self) -> None:
        """Go to the application (or reset with BOOT0 low); send the app nothing after.

        AN3155 3.5: the loader ACKs Go's address and then jumps, so its ACK is the answer.
        Only with ``boot_check = get-version`` is Get Version sent after it (two bytes the
        app receives) to catch a loader that ACKed and stayed; silence is awaited for the
        link's round trip plus :data:`BOOT_CHECK_MARGIN_S`, not the host margin.
        """
        if not await self._reset(boot0=False):
            await self._run(codec.go(FLASH_BASE))
        self._synced = False
        self._entered_from_app = None
        if self.wiring.boot_check != "get-version":
            return
        await self._write(codec.command_frame(Command.GET_VERSION))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wire(2 + 5) + 2 * TURNAROUND_S + BOOT_CHECK_MARGIN_S
        with contextlib.suppress(TimeoutError):
            while True:
                data = await self._read(deadline)
                if data[0] in (ACK, NACK):
                    raise BootFailed("the ROM bootloader still answers after Go: app not started")

    # ------------------------------------------------------------- the seam

    def _fail(self, exc: ProtocolError, step: Step) -> DriverError:
        # The loader may be mid-command now: the next call syncs (or resets) afresh.
        self._synced = False
        self._stale = True
        message = str(exc)
        if self._app_erased:
            # Single slot: say plainly what the failure cost, so the twin says it too.
            message += (
                "; the old application was erased: the MCU runs only its ROM bootloader "
                "until an update completes"
            )
        return DriverError(error_code(exc), message, step)

    async def identify(self) -> DeviceFacts:
        try:
            await self._connect()
            try:
                t = await self._probe()
            except ReadoutProtected as exc:
                if not self.wiring.unprotect:
                    raise
                return self._protected_facts(exc)
            # Leave the device as found: an app that took the enter command runs again; after
            # a reset only a verified one is started (never a half-written image).
            came = self._entered_from_app
            if came == "command" or (came == "lines" and t.record is not None):
                await self._start_app()
                return self._facts(t, in_bootloader=False)
            return self._facts(t, in_bootloader=True)
        except ProtocolError as exc:
            raise self._fail(exc, Step.CONNECT) from exc

    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        step = Step.CONNECT
        started = time.monotonic()
        tx0, rx0, re0 = self.tx_bytes, self.rx_bytes, self.retransmits
        data = image.data
        if hashlib.sha256(data).hexdigest() != image.sha256.lower():
            raise DriverError(
                DriverCode.IMAGE_REJECTED, "image bytes do not match their SHA-256", step
            )
        if not data:
            raise DriverError(DriverCode.IMAGE_REJECTED, "empty image", step)
        if data[:4] == b"\xff\xff\xff\xff":
            # A Cortex-M image starts with its initial stack pointer; erased flash there is
            # also how the driver tells a part with no record at a glance.
            raise DriverError(
                DriverCode.IMAGE_REJECTED,
                "image starts with 0xFFFFFFFF, not a vector table (initial stack pointer)",
                step,
            )
        try:
            rec = record.VersionRecord(image.version, FLASH_BASE, len(data),
                                       hashlib.sha256(data).digest())  # fmt: skip
            rec_bytes = rec.encode()
        except record.RecordError as exc:
            raise DriverError(DriverCode.IMAGE_REJECTED, str(exc), step) from exc
        try:
            progress(Progress(Step.CONNECT, 0, len(data)))
            await self._connect()
            try:
                t = await self._probe(for_install=True)
            except ReadoutProtected as exc:
                if not self.wiring.unprotect:
                    raise
                step = Step.ERASE
                await self._unprotect(exc.part, progress)
                t = await self._probe(for_install=True)
            if len(data) > t.capacity:
                raise LocalProtocolError(
                    f"image of {len(data)} bytes does not fit the {t.capacity} bytes of flash "
                    "that leave room for the version record"
                )
            step = Step.ERASE
            slot = layout.record_slot(t.part, t.sectors, len(data))
            blank = {slot} if t.record_blank else set()
            # An image that fills its last sector has its record at the end of the next
            # one, programmed without an erase unless a record is known to be there; bytes
            # that are not blank after all are found when the record is read back.
            if (
                layout.slot_outside_image(t.part, t.sectors, len(data))
                and slot not in t.records_at
            ):
                blank.add(slot)
            units = layout.erase_units(t.part, t.sectors, len(data), blank)
            erased = self.wiring.erase == "mass" or _unit_of(t, slot) in units
            if self.wiring.erase == "mass":
                await self._mass_erase(t, progress)
            else:
                await self._erase(t, await self._invalidate(t, units), progress)
            step = Step.WRITE
            t_write = time.monotonic()
            await self._commands(self._image_writes(t, data, progress))
            transfer_s = time.monotonic() - t_write
            step = Step.CHECK
            progress(Progress(Step.CHECK, 0, len(data)))
            await self._commands(self._image_reads(data, progress))
            step = Step.ACTIVATE
            progress(Progress(Step.ACTIVATE, 0, len(rec_bytes)))
            await self._place_record(t, slot, rec_bytes, erased=erased)
            self._app_erased = False
            progress(Progress(Step.ACTIVATE, len(rec_bytes), len(rec_bytes)))
            t = dataclasses.replace(
                t, record=rec, record_state="valid", record_address=slot, records_at=(slot,)
            )
            step = Step.BOOT
            progress(Progress(Step.BOOT, 0, 1))
            await self._start_app()
            progress(Progress(Step.BOOT, 1, 1))
        except ProtocolError as exc:
            raise self._fail(exc, step) from exc
        return InstallResult(
            outcome=Outcome.CONFIRMED,
            version=image.version,
            sha256=image.sha256,
            slot=0,
            bytes=len(data),
            seconds=time.monotonic() - started,
            transfer_seconds=transfer_s,
            wire_bytes_tx=self.tx_bytes - tx0,
            wire_bytes_rx=self.rx_bytes - rx0,
            retransmits=self.retransmits - re0,
            resumed_from=0,
            running_version=image.version,
            facts=self._facts(t, in_bootloader=False),
        )

    async def reboot(self) -> DeviceFacts:
        try:
            await self._connect()
            t = await self._probe()
            if t.record is None:
                raise NoApplication(f"no verified application to start ({t.record_state})")
            await self._start_app()
            return self._facts(t, in_bootloader=False)
        except ProtocolError as exc:
            raise self._fail(exc, Step.BOOT) from exc

    async def abort(self) -> DeviceFacts:
        """Nothing is staged between calls; start the app if it is whole, else stay put."""
        try:
            await self._connect()
            t = await self._probe()
            if t.record is None:
                return self._facts(t, in_bootloader=True)
            await self._start_app()
            return self._facts(t, in_bootloader=False)
        except ProtocolError as exc:
            raise self._fail(exc, Step.BOOT) from exc


def _serial(options: DriverOptions) -> SerialSettings:
    return SerialSettings(baud=options.baud or 115200, parity="E")


SPEC = DriverSpec(
    name=NAME,
    summary="STM32 ROM system bootloader over USART (ST AN3155): single slot, read-back verify",
    serial=_serial,
    open=Stm32RomDriver,
    probe_rank=30,
    options=frozenset(
        {
            "reset_line",
            "boot0_line",
            "reset_active_low",
            "boot0_active_high",
            "boot_delay_ms",
            "enter_command",
            "compat",
            "unprotect",
            "boot_check",
            "erase",
        }
    ),
)

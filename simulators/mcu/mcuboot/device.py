"""The simulated board over time: MCUboot at reset, then the app, which serves SMP.

Sans-I/O and clock-free: the caller passes ``now`` to :meth:`McubootDevice.receive`
and :meth:`McubootDevice.poll` and sleeps until :meth:`next_deadline`. MCUboot's
swap runs one flash operation per timer step (:func:`.boot.boot_steps`), so a
process killed mid-swap leaves the flash as a power cut would. The app confirms
its own images ``confirm_delay_s`` after a trial boot (as a Zephyr app calling
``boot_write_img_confirmed()`` does) unless its version is configured to crash, in
which case the watchdog resets it and MCUboot reverts.

With ``recovery`` set, MCUboot's serial recovery is entered at power-on (as with
the recovery button held, ``BOOT_SERIAL_ENTRANCE_GPIO``): the bootloader's own
SMP server (:mod:`.recovery`) answers until an SMP reset, which boots normally.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.mcuboot.framing import LINE_MAX, ConsoleDecoder, Packet, encode
from simulators.mcu.mcuboot.boot import BootResult, SwapType, boot_steps, swap_type
from simulators.mcu.mcuboot.flash import SlotFlash
from simulators.mcu.mcuboot.recovery import MAX_RECEIVE, RecoveryConfig, RecoveryServer
from simulators.mcu.mcuboot.server import ServerConfig, SmpServer
from simulators.mcu.mcuboot.validate import TrustedKey


class Run(enum.Enum):
    BOOTING = "booting"  # MCUboot is validating / swapping: the UART is deaf
    APP = "app"  # the application runs and answers SMP
    RECOVERY = "recovery"  # MCUboot's serial recovery answers SMP
    HALTED = "halted"  # no bootable image: MCUboot stopped


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    server: ServerConfig
    crash_versions: frozenset[str] = frozenset()
    no_confirm: bool = False
    boot_s: float = 0.05  # reset to app, without a swap
    swap_s_per_sector: float = 0.03  # one sector through a whole swap (move + 2 copies)
    confirm_delay_s: float = 0.1
    crash_delay_s: float = 0.05
    #: Zephyr answers "reset", then waits CONFIG_MCUMGR_GRP_OS_RESET_MS (default 250,
    #: os_mgmt/Kconfig); MCUboot's serial recovery waits 250 ms too (bs_reset).
    reset_delay_s: float = 0.25
    banner: bool = True  # print Zephyr's boot banner on the console
    keys: tuple[TrustedKey, ...] = ()  # MCUboot's signature keys; () = hash only
    recovery: bool = False  # serial recovery entered at power-on (button held)
    #: The board resets once when an upload first reaches this offset (a brown-out).
    reset_upload_at: int | None = None


@dataclass(order=True)
class _Timer:
    when: float
    order: int
    action: Callable[[float], None] = field(compare=False)


class McubootDevice:
    def __init__(
        self, flash: SlotFlash, config: DeviceConfig, now: float, *, powered_up: bool = False
    ) -> None:
        """``powered_up``: the board was on before the host attached (no boot delay)."""
        self.flash = flash
        self.config = config
        self.server = SmpServer(flash, config.server)
        self.run = Run.BOOTING
        self.running_version: str | None = None
        self.boots = 0
        self._decoder = ConsoleDecoder()
        self._timers: list[_Timer] = []
        self._order = itertools.count()
        self._out: list[tuple[float, bytes]] = []
        self._busy_until = 0.0
        self._epoch = 0  # bumps at each reset: timers of the previous run are void
        self.last_boot: BootResult | None = None
        self._brownout_done = False
        self._recovery: RecoveryServer | None = None
        self._reset(now, instant=powered_up, recovery=config.recovery)

    # --- time ------------------------------------------------------------------------

    def _at(self, when: float, action: Callable[[float], None]) -> None:
        epoch = self._epoch

        def guarded(now: float) -> None:
            if epoch == self._epoch:
                action(now)

        heapq.heappush(self._timers, _Timer(when, next(self._order), guarded))

    def next_deadline(self) -> float | None:
        return self._timers[0].when if self._timers else None

    def poll(self, now: float) -> list[tuple[float, bytes]]:
        """Run what is due by ``now``; returns (time, bytes) the device has sent."""
        while self._timers and self._timers[0].when <= now:
            timer = heapq.heappop(self._timers)
            timer.action(timer.when)
        out, self._out = self._out, []
        return out

    def _say(self, when: float, data: bytes) -> None:
        self._out.append((when, data))

    # --- reset and boot ----------------------------------------------------------

    def _reset(self, now: float, instant: bool = False, *, recovery: bool = False) -> None:
        self._epoch += 1
        self.run = Run.BOOTING
        self.running_version = None
        self.server = SmpServer(self.flash, self.config.server)  # RAM is lost
        self._recovery = None
        self._decoder = ConsoleDecoder()
        self._busy_until = now
        self.boots += 1
        if recovery:
            self._at(now + (0.0 if instant else self.config.boot_s), self._recovery_start)
            return
        result = BootResult()
        steps = boot_steps(self.flash, self.config.keys, result)
        if instant:  # the board was on before the host attached: its boot is history
            for _ in steps:
                pass
            self._booted(now, result)
            return
        # One flash operation of the swap per step: a sector copy is an erase, a
        # program and a status write, three steps of a third of a sector's swap time.
        step_s = self.config.swap_s_per_sector / 6

        def step(when: float) -> None:
            try:
                next(steps)
            except StopIteration:
                self._booted(when, result)
            else:
                self._at(when + step_s, step)

        self._at(now + self.config.boot_s, step)

    def _booted(self, now: float, result: BootResult) -> None:
        self.last_boot = result
        if result.image is None:
            self._halt(now)
            return
        self._app_start(now, result.image.version)

    def _recovery_start(self, now: float) -> None:
        self.run = Run.RECOVERY
        server = self.config.server
        self._recovery = RecoveryServer(
            self.flash,
            RecoveryConfig(
                keys=self.config.keys,
                erase_s_per_sector=server.erase_s_per_sector,
                program_s_per_kib=server.program_s_per_kib,
                turnaround_s=server.turnaround_s,
            ),
        )

    def _halt(self, now: float) -> None:
        self.run = Run.HALTED
        self._say(now, b"E: Unable to find bootable image\r\n")

    def _app_start(self, now: float, version: str) -> None:
        self.run = Run.APP
        self.running_version = version
        if self.config.banner:
            self._say(now, f"*** Booting Zephyr OS build v{self.config.server.kernel_release} "
                      f"(app {version}) ***\r\n".encode())  # fmt: skip
        if version in self.config.crash_versions:
            self._at(now + self.config.crash_delay_s, self._crash)
        elif not self.config.no_confirm and self._on_trial():
            self._at(now + self.config.confirm_delay_s, self._confirm)

    def _crash(self, now: float) -> None:
        self._say(now, b"E: ***** HARD FAULT *****\r\n")
        self._reset(now)  # the watchdog resets the board; MCUboot reverts

    def _on_trial(self) -> bool:
        return any(swap_type(self.flash, i) is SwapType.REVERT for i in range(self.flash.images))

    def _confirm(self, now: float) -> None:
        for image in range(self.flash.images):
            if swap_type(self.flash, image) is SwapType.REVERT:
                self.server.confirm(image)

    def power_on(self, now: float) -> None:
        self._reset(now, recovery=self.config.recovery)

    # --- link ----------------------------------------------------------------------

    def receive(self, now: float, data: bytes) -> None:
        """Bytes that reached the UART at ``now``; deaf unless the app or recovery runs."""
        if self.run not in (Run.APP, Run.RECOVERY):
            return
        for event in self._decoder.feed(data):
            if isinstance(event, Packet):
                self._request(now, event.data)

    def _request(self, now: float, packet: bytes) -> None:
        recovery = self._recovery if self.run is Run.RECOVERY else None
        limit = MAX_RECEIVE if recovery is not None else self.config.server.buf_size
        if len(packet) + 4 > limit:
            return  # does not fit the reassembly buffer: Zephyr drops it
        answer = recovery.handle(packet) if recovery is not None else self.server.handle(packet)
        if answer is None:
            return
        start = max(now, self._busy_until)
        done = start + answer.busy_s
        self._busy_until = done
        self._say(done, encode(answer.packet, LINE_MAX))
        if answer.reset:
            self._at(done + self.config.reset_delay_s, self._reset)
        elif self._brownout_due():
            self._brownout_done = True
            self._at(done, self._reset)

    def _brownout_due(self) -> bool:
        at = self.config.reset_upload_at
        off = self.server.upload_offset
        return at is not None and not self._brownout_done and off is not None and off >= at

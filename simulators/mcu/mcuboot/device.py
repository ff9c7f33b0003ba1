"""The simulated board over time: MCUboot at reset, then the app, which serves SMP.

Sans-I/O and clock-free: the caller passes ``now`` to :meth:`McubootDevice.receive`
and :meth:`McubootDevice.poll` and sleeps until :meth:`next_deadline`. The app
confirms its own image ``confirm_delay_s`` after a trial boot (as a Zephyr app
calling ``boot_write_img_confirmed()`` does) unless its version is configured to
crash, in which case the watchdog resets it and MCUboot reverts.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.mcuboot.framing import LINE_MAX, ConsoleDecoder, Packet, encode
from simulators.mcu.mcuboot.boot import SwapType, boot, swap_type
from simulators.mcu.mcuboot.flash import PRIMARY, SlotFlash
from simulators.mcu.mcuboot.server import ServerConfig, SmpServer


class Run(enum.Enum):
    BOOTING = "booting"  # MCUboot is validating / swapping: the UART is deaf
    APP = "app"  # the application runs and answers SMP
    HALTED = "halted"  # no bootable image: MCUboot stopped


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    server: ServerConfig
    crash_versions: frozenset[str] = frozenset()
    no_confirm: bool = False
    boot_s: float = 0.05  # reset to app, without a swap
    swap_s_per_sector: float = 0.03  # erase + copy of one sector, both slots
    confirm_delay_s: float = 0.1
    crash_delay_s: float = 0.05
    reset_delay_s: float = 0.1  # Zephyr answers "reset" then waits before resetting
    banner: bool = True  # print Zephyr's boot banner on the console


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
        self._reset(now, instant=powered_up)

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

    def _reset(self, now: float, instant: bool = False) -> None:
        self._epoch += 1
        self.run = Run.BOOTING
        self.running_version = None
        self.server = SmpServer(self.flash, self.config.server)  # RAM is lost
        self._decoder = ConsoleDecoder()
        self._busy_until = now
        result = boot(self.flash)
        self.boots += 1
        took = self.config.boot_s + result.sectors_moved * self.config.swap_s_per_sector
        if instant:
            took = 0.0
        if result.image is None:
            self._at(now + took, self._halt)
            return
        version = result.image.version
        self._at(now + took, lambda t: self._app_start(t, version))

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
        elif not self.config.no_confirm and swap_type(self.flash) is SwapType.REVERT:
            self._at(now + self.config.confirm_delay_s, self._confirm)

    def _crash(self, now: float) -> None:
        self._say(now, b"E: ***** HARD FAULT *****\r\n")
        self._reset(now)  # the watchdog resets the board; MCUboot reverts

    def _confirm(self, now: float) -> None:
        if swap_type(self.flash) is SwapType.REVERT:
            self.flash.set_trailer(PRIMARY, magic=True, image_ok=True, copy_done=True)

    def power_on(self, now: float) -> None:
        self._reset(now)

    # --- link ----------------------------------------------------------------------

    def receive(self, now: float, data: bytes) -> None:
        """Bytes that reached the UART at ``now``; deaf unless the app runs."""
        if self.run is not Run.APP:
            return
        for event in self._decoder.feed(data):
            if isinstance(event, Packet):
                self._request(now, event.data)

    def _request(self, now: float, packet: bytes) -> None:
        if len(packet) + 4 > self.config.server.buf_size:
            return  # does not fit the reassembly buffer: Zephyr drops it
        answer = self.server.handle(packet)
        if answer is None:
            return
        start = max(now, self._busy_until)
        done = start + answer.busy_s
        self._busy_until = done
        self._say(done, encode(answer.packet, LINE_MAX))
        if answer.reset:
            self._at(done + self.config.reset_delay_s, self._reset)

"""The virtual MCU as a :class:`~simulators.mcu.cutcheck.CutDevice`, on virtual time.

One :class:`Flash` outlives every power cycle; each power-on builds a fresh
:class:`McuCore` on it (RAM is lost, flash is kept), exactly as a reset of the
real part. Time only moves when the harness asks, so thousands of cut runs take
seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.packets import Request, Response
from simulators.mcu.core import McuCore, RunState
from simulators.mcu.cutcheck import PowerLost
from simulators.mcu.flash import Flash, PowerCut
from simulators.mcu.models import McuModel
from simulators.mcu.options import SimOptions

#: Chooses the op to cut from the core's state, the op kind and its address.
CutWhen = Callable[[McuCore, str, int], bool]

#: Longest virtual time a request waits for its answer (a full-image VERIFY fits).
_ANSWER_WAIT_S = 5.0


class SimDevice:
    def __init__(
        self, model: McuModel, options: SimOptions | None = None, app_version: str = "1.0.0"
    ) -> None:
        self.model = model
        self.options = options or SimOptions()
        self.flash = Flash(model)
        self.now = 0.0
        self._seq = 0
        self._codec = Codec()
        self._ops = 0
        self._cut_at: int | None = None
        self._cut_when: CutWhen | None = None
        self._dead = False
        self.core = self._new_core()
        self.core.install_initial_app(app_version)

    def _new_core(self) -> McuCore:
        core = McuCore(self.model, self.flash, b"\xc0\x7c", self.options)
        inner = self.flash.hook

        def hook(op: int, kind: str, addr: int) -> None:
            self._ops += 1
            aimed = self._cut_when is not None and self._cut_when(core, kind, addr)
            if aimed or (self._cut_at is not None and self._ops == self._cut_at):
                self._cut_at = self._cut_when = None
                self._dead = True
                raise PowerCut(f"cut at flash op {self._ops} ({kind} 0x{addr:x})")
            if inner is not None:
                inner(op, kind, addr)

        self.flash.hook = hook
        return core

    # ------------------------------------------------------------ CutDevice

    def arm_cut(self, op: int | None) -> None:
        self._cut_at = op
        self._ops = 0

    def arm_cut_when(self, when: CutWhen | None) -> None:
        """Cut at the first flash op ``when`` picks (an aimed cut, e.g. a CHECKPOINT append)."""
        self._cut_when = when

    def power_on(self, stay: bool = False) -> None:
        """Cold start; ``stay`` as after RESET(STAY): the bootloader, no boot decision."""
        self._dead = False
        self._codec = Codec()
        self.core = self._new_core()
        self._guard(lambda: self.core.power_on(self.now, stay))

    def request(self, req: Request) -> Response | None:
        self._check_alive()
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        wire = self._codec.encode(req, seq)
        self._guard(lambda: self.core.receive(self.now, wire))
        end = self.now + _ANSWER_WAIT_S
        while (deadline := self.core.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self._guard(lambda: self.core.advance(self.now))
            for _, data in self.core.take_output(self.now):
                self._codec.receive_data(data)
            while (ev := self._codec.next_event()) is not None:
                if isinstance(ev, PacketReceived) and ev.seq == seq:
                    return ev.message  # type: ignore[return-value]
        return None

    def wait(self, seconds: float) -> None:
        self._check_alive()
        end = self.now + seconds
        while (deadline := self.core.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self._guard(lambda: self.core.advance(self.now))
            self.core.take_output(self.now)
        self.now = end

    def flash_ops(self) -> int:
        return self._ops

    def running_image(self) -> bytes | None:
        core = self.core
        if self._dead or core.state is not RunState.APP or core.running_slot is None:
            return None
        trailer = core.trailers[core.running_slot]
        size = trailer.status().size
        return hashlib.sha256(self.flash.read(trailer.image_base, size)).digest()

    def slot_images(self) -> list[bytes]:
        out = []
        for t in self.core.trailers:
            size = t.status().size
            out.append(hashlib.sha256(self.flash.read(t.image_base, size)).digest())
        return out

    # ------------------------------------------------------------ helpers

    def _check_alive(self) -> None:
        if self._dead:
            raise PowerLost("the device has no power")

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except PowerCut as exc:
            self._dead = True
            raise PowerLost(str(exc)) from exc

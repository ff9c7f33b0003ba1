"""Systematic power-cut check of an A/B bootloader (docs/protocol.md §10.5).

Counts the flash operations of a full update (BEGIN, transfer, VERIFY,
ACTIVATE, the trial boot and the confirm), then replays the update cutting
power at each one, and at every sequence of such cuts up to a given depth,
counting each later cut from the power-on that follows the previous one (so the
boot decision's own appends are cut too). After every power-on it asserts the
invariant: the MCU runs an image whose bytes hash to the old or the new image.
After the last cut one more power-on and a clean flash must end with the new
image confirmed and running, and the old image still in the other slot.

The harness speaks only the wire protocol plus a few test hooks
(:class:`CutDevice`), so a C bootloader behind a small adapter can be driven by
it as well as the simulator (:mod:`simulators.mcu.cutdevice`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from protocols.mcugw.constants import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    BeginFlags,
    Mode,
    ResetMode,
    SlotState,
)
from protocols.mcugw.encoding import Encoded, Encoding
from protocols.mcugw.packets import (
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    DataAck,
    DataRequest,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Request,
    ResetRequest,
    Response,
    VerifyRequest,
    VerifyResponse,
)
from protocols.mcugw.plan import FlashStep, plan_flash


class PowerLost(Exception):
    """The armed cut fired: the device is off until the next :meth:`CutDevice.power_on`."""


class InvariantBroken(AssertionError):
    """A cut sequence left the MCU without a valid image, or a later flash failed."""


class CutDevice(Protocol):
    """What the check needs from a bootloader under test."""

    def arm_cut(self, op: int | None) -> None:
        """Cut power during the ``op``-th flash operation from now (torn); None disarms."""

    def power_on(self) -> None:
        """Cold start: RAM cleared, the boot decision runs. Raises PowerLost if cut."""

    def request(self, req: Request) -> Response | None:
        """One request; its answer, or None if none came. Raises PowerLost if cut."""

    def wait(self, seconds: float) -> None:
        """Let the device run (boots, the app's self-confirm). Raises PowerLost if cut."""

    def flash_ops(self) -> int:
        """Flash operations since the last :meth:`arm_cut`."""

    def running_image(self) -> bytes | None:
        """SHA-256 of the bytes of the image now running (None: in the bootloader)."""

    def slot_images(self) -> list[bytes]:
        """SHA-256 of the bytes of each slot's image, as long as its trailer says."""


@dataclass(frozen=True, slots=True)
class Update:
    image: bytes
    version: str
    old_sha256: bytes
    max_data: int
    boot_s: float  # the model's boot time
    settle_s: float = 1.0  # long enough for a trial app to confirm itself
    #: Sent as this block stream (compressed or delta, §17) instead of raw.
    encoded: Encoded | None = None

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.image).digest()


class FlashFailed(Exception):
    """The host-side update did not finish (refused or unanswered request)."""


def _ask(dev: CutDevice, req: Request) -> Response:
    resp = dev.request(req)
    if resp is None:
        raise FlashFailed(f"no answer to {req.OPCODE.name}")
    return resp


def flash_update(dev: CutDevice, up: Update) -> str:
    """What a host does to flash ``up`` (the same steps as protocols.mcugw.session).

    Returns the outcome: "confirmed", "rolled_back" or "unconfirmed".
    """
    hello = _ask(dev, HelloRequest(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION))
    if not isinstance(hello, HelloResponse):
        raise FlashFailed(f"HELLO answered {hello}")
    info = _info(dev)
    booted: int | None = None
    if info.mode is Mode.APP:
        # Let a running trial confirm first: resetting it would spend an attempt.
        for _ in range(20):
            index = info.running_slot
            running = info.slots[index] if index < len(info.slots) else None
            if running is None or running.state is not SlotState.TRIAL:
                break
            dev.wait(up.settle_s / 10)
            info = _info(dev)
        booted = info.running_slot if info.running_slot < len(info.slots) else None
        dev.request(ResetRequest(ResetMode.STAY))
        dev.wait(up.boot_s * 2)
        info = _info(dev)
        if info.mode is not Mode.BOOTLOADER:
            raise FlashFailed("did not enter the bootloader")
    plan = plan_flash(info, len(up.image), up.sha256, booted)
    slot = plan.slot
    if plan.step is FlashStep.WRITE:
        slot = _write(dev, up)
    assert slot is not None
    dev.request(ResetRequest(ResetMode.RUN))
    dev.wait(up.boot_s * 2 + up.settle_s)
    info = _info(dev)
    state = info.slots[slot].state
    if state is SlotState.INVALID:
        return "rolled_back"
    if state is SlotState.CONFIRMED and info.running_slot == slot:
        return "confirmed"
    return "unconfirmed"


def _info(dev: CutDevice) -> InfoResponse:
    resp = _ask(dev, InfoRequest())
    if not isinstance(resp, InfoResponse):
        raise FlashFailed(f"INFO answered {resp}")
    return resp


def begin_request(up: Update) -> BeginRequest:
    enc = up.encoded
    if enc is None:
        return BeginRequest(len(up.image), up.sha256, up.version)
    flags = BeginFlags.COMPRESSED | (BeginFlags.DELTA if enc.flags_delta else BeginFlags.NONE)
    return BeginRequest(
        len(up.image),
        up.sha256,
        up.version,
        flags,
        Encoding.DEFLATE_BLOCKS,
        len(enc.stream),
        enc.stream_sha256,
        enc.base_sha256,
    )


def _write(dev: CutDevice, up: Update) -> int:
    begin = _ask(dev, begin_request(up))
    if not isinstance(begin, BeginResponse):
        raise FlashFailed(f"BEGIN answered {begin}")
    payload = up.image if up.encoded is None else up.encoded.stream
    for off in range(begin.resume_offset, len(payload), up.max_data):
        ack = _ask(dev, DataRequest(off, payload[off : off + up.max_data]))
        if not isinstance(ack, DataAck) or ack.status.name != "OK":
            raise FlashFailed(f"DATA at {off} answered {ack}")
    verify = _ask(dev, VerifyRequest())
    if not isinstance(verify, VerifyResponse):
        raise FlashFailed(f"VERIFY answered {verify}")
    activate = _ask(dev, ActivateRequest())
    if getattr(activate, "status", None) is None or activate.status.name != "OK":
        raise FlashFailed(f"ACTIVATE answered {activate}")
    return begin.slot


@dataclass
class Report:
    sequences: int = 0
    cuts: int = 0  # cuts that fired
    outcomes: dict[str, int] = field(default_factory=dict)  # image running after the cuts

    def note(self, running: str) -> None:
        self.outcomes[running] = self.outcomes.get(running, 0) + 1


def _check_boot(dev: CutDevice, up: Update, where: str) -> str:
    running = dev.running_image()
    if running == up.old_sha256:
        return "old"
    if running == up.sha256:
        return "new"
    shown = "the bootloader" if running is None else f"an image hashing to {running.hex()}"
    raise InvariantBroken(f"{where}: the MCU runs {shown}, neither the old nor the new image")


def run_sequence(
    make: Callable[[], CutDevice], up: Update, cuts: tuple[int, ...], report: Report | None = None
) -> int:
    """Replay the update with ``cuts``; returns the flash ops of the final clean run.

    Each cut counts from the start of its run: the first run starts with the
    MCU running the old image; every later run starts with a power-on.
    """
    dev = make()
    dev.power_on()
    for i, k in enumerate(cuts):
        dev.arm_cut(k)
        try:
            if i:
                dev.power_on()
                _check_boot(dev, up, f"after cuts {cuts[:i]}")
            flash_update(dev, up)
        except PowerLost:
            if report is not None:
                report.cuts += 1
        except FlashFailed:
            pass  # a cut in a previous run may make this one fail; the next run counts
        dev.arm_cut(None)
    dev.arm_cut(None)
    dev.power_on()
    where = f"after cuts {cuts}"
    first = _check_boot(dev, up, where)
    try:
        outcome = flash_update(dev, up)
    except FlashFailed as exc:
        raise InvariantBroken(f"{where}: the following flash failed: {exc}") from exc
    if outcome != "confirmed" or _check_boot(dev, up, where) != "new":
        raise InvariantBroken(f"{where}: the following flash ended {outcome}")
    # One update from old to new never needs the old image's slot (§10.4).
    if up.old_sha256 not in dev.slot_images():
        raise InvariantBroken(f"{where}: the old image was overwritten (no way back)")
    if report is not None:
        report.sequences += 1
        report.note(first)
    return dev.flash_ops()


def ops_after(make: Callable[[], CutDevice], up: Update, prefix: tuple[int, ...]) -> int:
    """Flash operations of the run that follows the cuts in ``prefix``, done cleanly."""
    dev = make()
    dev.power_on()
    for i, k in enumerate(prefix):
        dev.arm_cut(k)
        try:
            if i:
                dev.power_on()
            flash_update(dev, up)
        except (PowerLost, FlashFailed):
            pass
    dev.arm_cut(None)
    try:
        if prefix:
            dev.power_on()
        flash_update(dev, up)
    except FlashFailed:
        pass
    return dev.flash_ops()


def exhaustive(
    make: Callable[[], CutDevice], up: Update, depth: int, prefix: tuple[int, ...] = ()
) -> Iterator[tuple[int, ...]]:
    """Every cut sequence of length ``depth``: each cut at every op of its run."""
    if depth == 0:
        yield prefix
        return
    for k in range(1, ops_after(make, up, prefix) + 1):
        yield from exhaustive(make, up, depth - 1, (*prefix, k))


def repeated(make: Callable[[], CutDevice], up: Update, depth: int) -> Iterator[tuple[int, ...]]:
    """The same op cut ``depth`` times in a row, for every op of a full update."""
    for k in range(1, ops_after(make, up, ()) + 1):
        yield (k,) * depth


def sampled(
    make: Callable[[], CutDevice], up: Update, depth: int, count: int, seed: int
) -> Iterator[tuple[int, ...]]:
    """``count`` random sequences of ``depth`` cuts, each at a valid op of its run."""
    rng = random.Random(seed)
    for _ in range(count):
        seq: tuple[int, ...] = ()
        for _ in range(depth):
            seq = (*seq, rng.randint(1, max(1, ops_after(make, up, seq))))
        yield seq


def check(
    make: Callable[[], CutDevice], up: Update, sequences: Iterator[tuple[int, ...]]
) -> Report:
    """Run every sequence; raises InvariantBroken naming the first one that fails."""
    report = Report()
    for seq in sequences:
        run_sequence(make, up, seq, report)
    return report

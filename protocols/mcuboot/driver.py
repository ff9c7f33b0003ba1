"""The ``mcuboot`` driver: MCUboot's image management over SMP on a serial console.

Maps the seam onto SMP (see docs/bootloaders-mcuboot.md):

* identify: ``os info`` (board, kernel, hardware id through the app's custom
  format letter), ``mcumgr params``, ``slot info``, ``image state``;
* install: check the MCUboot header/TLV locally, ``image upload`` into the
  secondary slot from the offset the device names (resume), ``image state`` to
  check the hash, ``image state write`` (test), ``os reset``, then poll
  ``image state`` until the trial image is confirmed, reverted, or time is up.

This module is the one place that turns this protocol's exceptions into error
codes and kinds (:func:`error_code`; codes in :mod:`protocols.mcuboot.codes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

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
    Step,
    no_progress,
)
from protocols.errors import PortNotFound, TransportDisconnected
from protocols.failures import AnyCode, DriverCode, FamilyCode, lookup
from protocols.mcuboot import client as smp
from protocols.mcuboot.codes import McubootCode
from protocols.mcuboot.errors import (
    FrameError,
    ImageError,
    SmpError,
    SmpProtocolError,
    SmpRejected,
    SmpTimeout,
    VerifyError,
)
from protocols.mcuboot.image import McubootImage, parse_image, parse_version
from protocols.mcuboot.link import SmpLink, Timing
from protocols.mcuboot.state import SlotView, active_slot, find, parse_state
from protocols.transport import Transport

NAME = "mcuboot"
PRIMARY, SECONDARY = 0, 1
FRAME_OVERHEAD = 4  # length + CRC16 share the device's reassembly buffer

CAPABILITIES = frozenset(
    {
        Capability.AB_SLOTS,
        Capability.TRIAL_BOOT,
        Capability.ROLLBACK,
        Capability.RESUME,
        Capability.DEVICE_HASH,
    }
)


def error_code(exc: BaseException) -> AnyCode:
    """The error code (and with it the kind) for one of this driver's exceptions."""
    if isinstance(exc, ImageError):
        return DriverCode.IMAGE_REJECTED
    if isinstance(exc, SmpTimeout):
        return DriverCode.TIMEOUT
    if isinstance(exc, TransportDisconnected | PortNotFound):
        return DriverCode.DISCONNECTED
    if isinstance(exc, SmpRejected):
        return smp_code(exc.name)
    if isinstance(exc, VerifyError):
        return DriverCode.VERIFY_FAILED
    if isinstance(exc, FrameError):
        return McubootCode.FRAME_ERROR
    # Sequence numbers or answers out of place: damaged or crossed frames, in practice.
    return DriverCode.PROTOCOL_ERROR


def smp_code(name: str) -> AnyCode:
    """``MCU_SMP_<name>``: a table member if one names it, else a member of its family."""
    code = f"MCU_SMP_{name}"
    return lookup(code) or FamilyCode.of(code)


class McubootDriver:
    """MCUboot over SMP on one transport; every public method translates errors once."""

    def __init__(self, transport: Transport, options: DriverOptions) -> None:
        self.options = options
        self._port = transport.name
        self.timing = Timing.from_options(options)
        self.link = SmpLink(transport, self.timing)
        self._identity: dict[str, str | int | bool] | None = None
        self._capacity = 0

    # --- errors ------------------------------------------------------------------

    def _fail(self, exc: BaseException, step: Step, probing: bool = False) -> DriverError:
        if isinstance(exc, DriverError):
            return exc
        silent = isinstance(exc, SmpTimeout | FrameError | SmpProtocolError)
        # Only a probe may take garbage for "not SMP": a device being updated was identified
        # as one, so damaged answers there are a damaged link (and retried as one).
        if silent and not self.link.answered and probing:
            # Silence, an echo or another protocol's bytes: not an SMP server.
            return NoAnswer(f"no SMP answer on {self._port}: {exc}")
        return DriverError(error_code(exc), str(exc), step)

    # --- identify ----------------------------------------------------------------

    async def _identity_facts(self) -> dict[str, str | int | bool]:
        if self._identity is not None:
            return self._identity
        link = self.link
        # The first request also tells SMP from silence; one retry only, so a probe is quick.
        params = await self._optional(smp.params_read, "mcumgr params", retries=1)
        if params is not None and isinstance(params.get("buf_size"), int):
            link.buf_size = max(64, params["buf_size"])
        configured = self.options.extra.get("buf_size")
        if isinstance(configured, int | str) and not isinstance(configured, bool):
            with contextlib.suppress(ValueError):
                link.buf_size = max(64, int(str(configured), 0))  # the port knows better
        board = await self._os_info("i", "os info (board)")
        kernel = await self._os_info("srv", "os info (kernel)")
        uid = await self._uid()
        boot = await self._optional(smp.bootloader_info_read, "bootloader info")
        slot_info = await self._optional(smp.slot_info_read, "slot info")
        self._capacity = self._max_image(slot_info)
        self._identity = {
            "uid": uid,
            "board": board or "unknown",
            "kernel": kernel,
            "bootloader": str((boot or {}).get("bootloader", "MCUboot")),
            "buf_size": link.buf_size,
            "buf_count": int((params or {}).get("buf_count", 1) or 1),
        }
        return self._identity

    async def _os_info(self, fmt: str, what: str) -> str:
        body = await self.link.call(lambda s: smp.os_info_read(s, fmt), what)
        return str(body.get("output", "")).strip()

    async def _optional(
        self, build: Callable[[int], bytes], what: str, retries: int | None = None
    ) -> dict[str, Any] | None:
        """A request some servers do not implement: their refusal is None, not an error."""
        try:
            return await self.link.call(build, what, retries=retries)
        except SmpRejected:
            return None

    async def _uid(self) -> str:
        extra = self.options.extra
        letter = str(extra.get("uid_format", "h"))
        configured = str(extra.get("uid", "")).strip().lower()
        try:
            body = await self.link.call(lambda s: smp.os_info_read(s, letter), "os info (uid)")
            text = str(body.get("output", "")).split()
            candidate = text[-1].lower() if text else ""
            int(candidate, 16)
            return candidate
        except SmpRejected:
            pass
        except ValueError:
            pass
        if configured:
            try:
                int(configured, 16)
            except ValueError:
                msg = f"configured uid {configured!r} is not hex"
                raise DriverError(DriverCode.NO_UID, msg) from None
            return configured
        raise DriverError(
            DriverCode.NO_UID,
            f"the device on {self._port} reports no hardware id (os info '{letter}') and no "
            "uid is configured for this port; add the app's hardware-id hook or set the "
            "port's driver option uid = <hex> (docs/bootloaders-mcuboot.md)",
        )

    def _max_image(self, slot_info: dict[str, Any] | None) -> int:
        with contextlib.suppress(AttributeError, TypeError, IndexError, KeyError):
            images = (slot_info or {})["images"]
            image = next(i for i in images if i.get("image", 0) == 0)
            if isinstance(image.get("max_image_size"), int):
                return int(image["max_image_size"])
            sizes = [s["size"] for s in image["slots"] if s.get("slot") == SECONDARY]
            if sizes:
                return int(sizes[0])
        value = self.options.extra.get("slot_size", 0)
        try:
            return int(str(value), 0)
        except ValueError:
            return 0

    async def _state(self) -> list[SlotView]:
        return parse_state(await self.link.call(smp.state_read, "image state"))

    async def _facts(self, slots: list[SlotView] | None = None) -> DeviceFacts:
        ident = await self._identity_facts()
        slots = await self._state() if slots is None else slots
        active = active_slot(slots)
        facts = tuple(
            SlotFacts(
                index=s.slot,
                state=s.state,
                version=s.version,
                sha256=s.hash.hex(),
                running=s.active,
            )
            for s in sorted(slots, key=lambda s: s.slot)
        )
        compat = str(self.options.extra.get("compat", "")) or f"zephyr:{ident['board']}:"
        details: dict[str, str | int | bool] = {k: v for k, v in ident.items() if k != "uid"}
        details["pending"] = any(s.pending for s in slots)
        for s in slots:  # mcumgr's own flags, as `mcumgr image list` shows them
            flags = ("active", "confirmed", "pending", "permanent", "bootable")
            details[f"slot{s.slot}"] = ",".join(f for f in flags if getattr(s, f))
        return DeviceFacts(
            driver=NAME,
            uid=str(ident["uid"]),
            model=str(ident["board"]),
            compat=compat,
            bootloader_version=str(ident["bootloader"]),
            protocol_version="smp2",
            installed_version=active.version if active else None,
            capacity=self._capacity,
            safety=Safety.AB_ROLLBACK,
            capabilities=CAPABILITIES,
            slots=facts,
            in_bootloader=False,
            details=details,
        )

    async def identify(self) -> DeviceFacts:
        try:
            return await self._facts()
        except (SmpError, TransportDisconnected) as exc:
            raise self._fail(exc, Step.CONNECT, probing=True) from exc

    # --- install -----------------------------------------------------------------

    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        started = time.monotonic()
        step = Step.CONNECT
        if hashlib.sha256(image.data).hexdigest() != image.sha256.lower():
            raise DriverError(
                DriverCode.IMAGE_REJECTED, "image bytes do not match their SHA-256", step
            )
        try:
            parsed = parse_image(image.data)
        except ImageError as exc:
            raise DriverError(
                DriverCode.IMAGE_REJECTED, f"not an MCUboot image: {exc}", step
            ) from exc
        if not parsed.bootable:
            raise DriverError(
                DriverCode.IMAGE_REJECTED, "image header is flagged non-bootable", step
            )
        with contextlib.suppress(ValueError):  # a version MCUboot cannot hold is not compared
            if parse_version(image.version) != parse_version(parsed.version):
                raise DriverError(
                    DriverCode.IMAGE_REJECTED,
                    f"the package says version {image.version} but the image header says "
                    f"{parsed.version}",
                    step,
                )
        total = len(image.data)
        transfer_s = 0.0
        resumed = 0
        sent = 0
        try:
            progress(Progress(Step.CONNECT, 0, total))
            await self._identity_facts()
            if self._capacity and total > self._capacity:
                raise DriverError(
                    DriverCode.IMAGE_TOO_LARGE,
                    f"image is {total} bytes; the device's slot takes {self._capacity}",
                    step,
                )
            slots = await self._state()
            running = active_slot(slots)
            if running is not None and running.hash == parsed.hash:
                step = Step.BOOT
                outcome = await self._outcome(parsed, progress, reset=False, slots=slots)
            else:
                staged = find(slots, parsed.hash)
                if staged is None or staged.slot != SECONDARY:
                    step = Step.WRITE
                    t0 = time.monotonic()
                    sent, resumed = await self._upload(image.data, progress)
                    transfer_s = time.monotonic() - t0
                step = Step.CHECK
                progress(Progress(Step.CHECK, 0, total))
                slots = await self._state()
                self._check_staged(slots, parsed)
                progress(Progress(Step.CHECK, total, total))
                step = Step.ACTIVATE
                progress(Progress(Step.ACTIVATE, 0, total))
                staged = find(slots, parsed.hash)
                if staged is None or not staged.pending:
                    slots = parse_state(
                        await self.link.call(
                            lambda s: smp.state_write(s, parsed.hash, False), "image test"
                        )
                    )
                    self._check_pending(slots, parsed)
                progress(Progress(Step.ACTIVATE, total, total))
                step = Step.BOOT
                outcome = await self._outcome(parsed, progress, reset=True)
            facts = await self._facts()
        except (SmpError, TransportDisconnected) as exc:
            raise self._fail(exc, step) from exc
        return InstallResult(
            outcome=outcome,
            version=image.version,
            sha256=image.sha256,
            slot=SECONDARY,
            bytes=total,
            seconds=time.monotonic() - started,
            transfer_seconds=transfer_s,
            wire_bytes_tx=self.link.tx,
            wire_bytes_rx=self.link.rx,
            retransmits=self.link.retransmits,
            resumed_from=resumed,
            running_version=facts.installed_version or "",
            facts=facts,
            details={"bytes_sent": sent},
        )

    def _chunk(self, off: int, data: bytes) -> tuple[int, Callable[[int], bytes]]:
        """The largest chunk at ``off`` that fits the device's buffer, and its builder."""
        room = self.link.buf_size - FRAME_OVERHEAD
        first = off == 0
        sha = hashlib.sha256(data).digest() if first else b""

        def build(seq: int, n: int) -> bytes:
            piece = data[off : off + n]
            if first:
                return smp.upload(seq, 0, piece, total=len(data), sha=sha)
            return smp.upload(seq, off, piece)

        empty = len(build(0, 0))
        n = room - empty
        n -= smp.cbor_bytes_overhead(n)
        n = max(1, min(n, len(data) - off))
        return n, lambda seq: build(seq, n)

    def _window(self) -> int:
        """Upload chunks kept in flight: the device buffers ``buf_count`` packets and
        answers them in order, so a second chunk crosses the wire while the first is
        being programmed. ``upload_window`` in the port's extras overrides (1: stop-and-wait).
        """
        value = self.options.extra.get("upload_window")
        if isinstance(value, int | str) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                return max(1, int(value))
        count = self._identity.get("buf_count", 1) if self._identity else 1
        return max(1, min(2, int(count)))

    def _answered_off(self, body: dict[str, Any], total: int) -> int:
        off = body.get("off")
        if not isinstance(off, int) or not 0 <= off <= total:
            raise SmpProtocolError(f"upload answer names offset {off!r} of {total}")
        return off

    async def _upload(self, data: bytes, progress: ProgressFn) -> tuple[int, int]:
        """Upload into the secondary slot; returns (bytes sent, offset resumed from).

        The first chunk goes alone (the device erases, or names the offset of an
        earlier session of the same image to resume from). Then up to
        :meth:`_window` chunks are in flight. Every answer names the device's
        offset; when it is not the end of the chunk answered, the chunks in flight
        are dropped and sending restarts from the device's offset. A lost or
        damaged answer restarts from the last confirmed offset, a bounded number
        of times in a row.
        """
        total = len(data)
        link = self.link
        progress(Progress(Step.WRITE, 0, total))
        n, build = self._chunk(0, data)
        body = await link.call(build, "image upload at 0", extra_s=self.timing.erase_s)
        off = self._answered_off(body, total)
        resumed = off if off > n else 0  # the device kept an earlier session of this image
        sent = n if off == n else 0
        progress(Progress(Step.WRITE, off, total))
        if off == total and body.get("match") is False:
            raise VerifyError("the device's SHA-256 of the uploaded image does not match")
        window = self._window()
        flight: deque[tuple[int, int, int, int]] = deque()  # seq, off, length, wire bytes
        next_off = off
        failures = 0
        while off < total:
            while len(flight) < window and next_off < total:
                n, build = self._chunk(next_off, data)
                seq, size = await link.send(build)
                flight.append((seq, next_off, n, size))
                next_off += n
            try:
                reply = await link.receive(link.limit(sum(f[3] for f in flight), 0, len(flight)))
            except SmpTimeout:
                reply = None
            if reply is None:
                failures += 1
                if failures > self.timing.retries:
                    raise SmpTimeout(
                        f"image upload at {off}: no clean answer after {failures} attempts"
                    )
                link.retransmits += len(flight)
                link.give_up()
                flight.clear()
                next_off = off
                continue
            body = smp.check(reply, f"image upload at {off}")
            answered = next((f for f in flight if f[0] == reply.header.seq), None)
            if answered is None:
                raise SmpProtocolError(f"upload answer for seq {reply.header.seq} not in flight")
            new_off = self._answered_off(body, total)
            failures = 0
            if new_off == answered[1] + answered[2]:
                flight.remove(answered)
                sent += answered[2]
            else:  # the device is elsewhere: continue from where it says
                link.give_up()
                flight.clear()
                next_off = new_off
            off = new_off
            progress(Progress(Step.WRITE, off, total))
            if off == total and body.get("match") is False:
                raise VerifyError("the device's SHA-256 of the uploaded image does not match")
        link.give_up()  # answers to chunks past the end (none are sent) or corrected ones
        return sent, resumed

    @staticmethod
    def _check_staged(slots: list[SlotView], parsed: McubootImage) -> None:
        staged = find(slots, parsed.hash)
        if staged is None or staged.slot != SECONDARY:
            raise VerifyError(
                f"after upload the secondary slot does not hold image {parsed.hash.hex()[:16]}"
            )
        if staged.version != parsed.version:
            raise VerifyError(f"secondary slot reports {staged.version}, image is {parsed.version}")

    @staticmethod
    def _check_pending(slots: list[SlotView], parsed: McubootImage) -> None:
        staged = find(slots, parsed.hash)
        if staged is None or not staged.pending:
            raise VerifyError("the device did not mark the new image pending for test")

    async def _reset(self) -> None:
        """``os reset``, sent once: a resent reset could land on the freshly booted trial
        image and make MCUboot revert it. A lost answer (the board reset before it left
        the UART) is not an error; the polls that follow tell."""
        with contextlib.suppress(SmpTimeout, FrameError):
            await self.link.call(smp.reset, "reset", retries=0)

    async def _boot_answer(self) -> list[SlotView]:
        """Poll ``image state`` until the rebooted device answers (bounded by boot time)."""
        deadline = asyncio.get_running_loop().time() + self.timing.boot_s
        while True:
            try:
                return await self._state_once()
            except (SmpTimeout, FrameError):
                if asyncio.get_running_loop().time() >= deadline:
                    raise SmpTimeout(
                        f"the device did not answer within {self.timing.boot_s:.0f} s of reset"
                    ) from None

    async def _state_once(self) -> list[SlotView]:
        body = await self.link.call(smp.state_read, "image state", retries=0)
        return parse_state(body)

    def _poll_interval(self) -> float:
        """Spacing of outcome polls: a few state-read round trips, so the link stays free."""
        return max(0.02, 4 * self.timing.wire(512))  # ~ a state read and its answer

    async def _outcome(
        self,
        parsed: McubootImage,
        progress: ProgressFn,
        *,
        reset: bool,
        slots: list[SlotView] | None = None,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        wait = self.options.confirm_timeout_s
        progress(Progress(Step.BOOT, 0, 1))
        if reset:
            await self._reset()
            slots = await self._boot_answer()
        assert slots is not None
        deadline = loop.time() + wait
        seen_new = False
        while True:
            active = active_slot(slots)
            if active is not None and active.hash == parsed.hash:
                seen_new = True
                if active.confirmed:
                    progress(Progress(Step.BOOT, 1, 1))
                    return Outcome.CONFIRMED
            elif active is not None:
                staged = find(slots, parsed.hash)
                if staged is None or not staged.pending:
                    progress(Progress(Step.BOOT, 1, 1))
                    return Outcome.ROLLED_BACK
            if loop.time() >= deadline:
                progress(Progress(Step.BOOT, 1, 1))
                if seen_new and active is not None and active.hash == parsed.hash:
                    return Outcome.UNCONFIRMED
                staged = find(slots, parsed.hash)
                if staged is not None and staged.pending:
                    raise SmpTimeout(
                        "the device did not reset into the new image (it is still pending; "
                        "it boots on trial at the next reset)"
                    )
                raise VerifyError("the device did not boot the new image before the deadline")
            await asyncio.sleep(self._poll_interval())
            try:
                slots = await self._state_once()
            except (SmpTimeout, FrameError):
                # Silent or garbled: the trial image crashed and MCUboot is reverting, or
                # the line hit noise; wait for a clean answer within the boot allowance.
                slots = await self._boot_answer()

    # --- reboot / abort ------------------------------------------------------------

    async def reboot(self) -> DeviceFacts:
        try:
            await self._identity_facts()
            await self._reset()
            await self._boot_answer()
            return await self._facts()
        except (SmpError, TransportDisconnected) as exc:
            raise self._fail(exc, Step.BOOT) from exc

    async def abort(self) -> DeviceFacts:
        """Nothing staged survives a reset unless marked pending; a pending test is kept.

        SMP cannot un-mark a pending image, so abort drops an unfinished upload
        session (by erasing the secondary slot when it is not in use) and reboots.
        """
        try:
            await self._identity_facts()
            slots = await self._state()
            in_use = any(s.pending or (s.confirmed and not s.active) for s in slots)
            if not in_use:
                with contextlib.suppress(SmpRejected):
                    await self.link.call(
                        lambda s: smp.encode_packet(
                            smp.Op.WRITE, smp.Group.IMAGE, smp.ImgCmd.ERASE, s, {"slot": 1}
                        ),
                        "image erase",
                        extra_s=self.timing.erase_s,
                    )
        except (SmpError, TransportDisconnected) as exc:
            raise self._fail(exc, Step.CONNECT) from exc
        return await self.reboot()


SPEC = DriverSpec(
    name=NAME,
    summary="MCUboot via SMP (mcumgr) on the serial console: A/B swap, trial boot, revert",
    open=McubootDriver,
    probe_rank=30,
)

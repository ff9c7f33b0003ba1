"""The ``mcuboot`` driver: MCUboot's image management over SMP on a serial console.

Maps the seam onto SMP (see docs/bootloaders-mcuboot.md):

* identify: ``mcumgr params``, ``os info`` (board, kernel, hardware id through the
  app's custom format letter), ``bootloader info``, ``slot info``, each optional
  (stock Zephyr enables none of them), then ``image state``;
* install: check the MCUboot header/TLV locally, ``image upload`` of image N into
  its secondary slot from the offset the device names (resume; a device that reset
  mid-upload names offset 0 and the upload starts over), ``image state`` to check
  the hash, ``image state write`` (test), ``os reset``, then poll ``image state``
  until the trial image is confirmed, reverted, or time is up;
* in MCUboot's serial recovery (no slot is active): ``image upload`` straight into
  the primary slot, ``image state`` to see MCUboot list it, ``os reset``.

This module is the one place that turns this protocol's exceptions into error
codes and kinds (:func:`error_code`; codes in :mod:`protocols.mcuboot.codes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
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
from protocols.mcuboot.image import McubootImage, padding_start, parse_image, parse_version
from protocols.mcuboot.link import SmpLink, Timing
from protocols.mcuboot.state import (
    SlotView,
    active_slot,
    find,
    image_count,
    of_image,
    parse_state,
)
from protocols.mcuboot.upload import Upload
from protocols.transport import Transport

NAME = "mcuboot"
PRIMARY, SECONDARY = 0, 1

CAPABILITIES = frozenset(
    {
        Capability.AB_SLOTS,
        Capability.TRIAL_BOOT,
        Capability.ROLLBACK,
        Capability.RESUME,
        Capability.DEVICE_HASH,
    }
)
#: MCUboot's serial recovery overwrites the primary slot: no trial, no revert, and
#: its upload session lives only until the bootloader resets.
RECOVERY_CAPABILITIES = frozenset({Capability.RESUME})


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
        self._image = self._int_option("image", 0)
        self._images = 1  # from the device's image list
        self._recovery = False  # MCUboot's serial recovery answers, not the app
        self._restarts = 0  # uploads started over after the device lost them
        self._slot_info: dict[str, Any] | None = None
        self._image_source = "driver option image"

    def _int_option(self, key: str, default: int) -> int:
        value = self.options.extra.get(key, default)
        try:
            number = int(str(value), 0)
        except ValueError:
            raise DriverError(
                DriverCode.CONFIG_INVALID, f"driver option {key} = {value!r} is not a number"
            ) from None
        if number < 0:
            raise DriverError(DriverCode.CONFIG_INVALID, f"driver option {key} must be >= 0")
        return number

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
        """What the device says about itself; every command here is optional.

        Zephyr enables ``mcumgr params``, ``os info`` and ``bootloader info`` only
        when the build asks for them (docs/bootloaders-mcuboot.md, "Stock Zephyr"),
        and MCUboot's serial recovery has none of them: a refusal is not an error.
        """
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
        reported_board = await self._os_info("i", "os info (board)")
        has_info = reported_board is not None
        kernel = await self._os_info("srv", "os info (kernel)") if has_info else None
        uid = await self._uid(has_info)
        boot = await self._optional(smp.bootloader_info_read, "bootloader info")
        self._slot_info = await self._optional(smp.slot_info_read, "slot info")
        self._capacity = self._max_image(self._slot_info)
        configured_board = str(self.options.extra.get("board", "")).strip()
        board = configured_board or reported_board or "unknown"
        source = "config" if configured_board else "device" if reported_board else "none"
        self._identity = {
            "uid": uid,
            "board": board,
            "board_source": source,
            "bootloader": str((boot or {}).get("bootloader", "MCUboot")),
            "buf_size": link.buf_size,
            "buf_count": int((params or {}).get("buf_count", 1) or 1),
        }
        if kernel:
            self._identity["kernel"] = kernel
        return self._identity

    async def _os_info(self, fmt: str, what: str) -> str | None:
        """``os info`` output, or None when the build has no such command (ENOTSUP)."""
        body = await self._optional(lambda s: smp.os_info_read(s, fmt), what)
        if body is None:
            return None
        return str(body.get("output", "")).strip() or None

    async def _optional(
        self, build: Callable[[int], bytes], what: str, retries: int | None = None
    ) -> dict[str, Any] | None:
        """A request some servers do not implement: their refusal is None, not an error."""
        try:
            return await self.link.call(build, what, retries=retries)
        except SmpRejected:
            return None

    async def _uid(self, has_info: bool) -> str:
        """The device's hardware id (``os info`` hook), else the configured ``uid``."""
        extra = self.options.extra
        letter = str(extra.get("uid_format", "h"))
        configured = str(extra.get("uid", "")).strip().lower()
        if has_info:
            text = (await self._os_info(letter, "os info (uid)") or "").split()
            candidate = text[-1].lower() if text else ""
            with contextlib.suppress(ValueError):
                int(candidate, 16)
                return candidate
        if configured:
            try:
                int(configured, 16)
            except ValueError:
                msg = f"configured uid {configured!r} is not hex"
                raise DriverError(DriverCode.NO_UID, msg) from None
            return configured
        why = (
            f"os info '{letter}' is not answered"
            if has_info
            else "os info is not in its build, as in Zephyr's default"
        )
        raise DriverError(
            DriverCode.NO_UID,
            f"the device on {self._port} reports no hardware id ({why}) and no uid is "
            "configured for this port; set the port's driver option uid = <hex>, or add "
            "the app's hardware-id hook (docs/bootloaders-mcuboot.md)",
        )

    def _max_image(self, slot_info: dict[str, Any] | None) -> int:
        with contextlib.suppress(AttributeError, TypeError, IndexError, KeyError):
            images = (slot_info or {})["images"]
            image = next((i for i in images if i.get("image", 0) == self._image), None) or {}
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
        """The selected image's slots; also learns the image count and the mode."""
        slots = parse_state(await self.link.call(smp.state_read, "image state"))
        return self._mine(slots)

    def _mine(self, slots: list[SlotView]) -> list[SlotView]:
        self._images = image_count(slots)
        # The app always reports the image it runs as active; MCUboot's serial recovery
        # reports no flags (BOOT_SERIAL_IMG_GRP_IMAGE_STATE is off by default).
        mode = str(self.options.extra.get("mode", "")).strip().lower()
        self._recovery = mode == "recovery" or not any(s.active for s in slots)
        if self._image >= self._images:
            from_package = self._image_source != "driver option image"
            raise DriverError(
                DriverCode.IMAGE_REJECTED if from_package else DriverCode.CONFIG_INVALID,
                f"{self._image_source} = {self._image}, but the device on {self._port} lists "
                f"{self._images} image(s) (0..{self._images - 1})",
            )
        return of_image(slots, self._image)

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
        details["images"] = self._images
        details["image"] = self._image
        details["mode"] = "serial-recovery" if self._recovery else "app"
        for s in slots:  # mcumgr's own flags, as `mcumgr image list` shows them
            flags = ("active", "confirmed", "pending", "permanent", "bootable")
            details[f"slot{s.slot}"] = ",".join(f for f in flags if getattr(s, f))
        if self._recovery:
            # Serial recovery lists only images MCUboot validated, without flags: the
            # primary slot's image is what MCUboot boots after the reset.
            primary = next((s for s in slots if s.slot == PRIMARY), None)
            installed = primary.version if primary else None
        else:
            installed = active.version if active else None
        return DeviceFacts(
            driver=NAME,
            uid=str(ident["uid"]),
            model=str(ident["board"]),
            compat=compat,
            bootloader_version=str(ident["bootloader"]),
            protocol_version="smp2",
            installed_version=installed,
            capacity=self._capacity,
            safety=Safety.SINGLE_SLOT if self._recovery else Safety.AB_ROLLBACK,
            capabilities=RECOVERY_CAPABILITIES if self._recovery else CAPABILITIES,
            slots=facts,
            in_bootloader=self._recovery,
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
        try:
            same = parse_version(image.version) == parse_version(parsed.version)
        except ValueError:  # e.g. 2.1.0-rc1: the MCU would report only what its header says
            same = False
        if not same:
            raise DriverError(
                DriverCode.IMAGE_REJECTED,
                f"the package says version {image.version} but the image header says "
                f"{parsed.version}",
                step,
            )
        if image.target is not None:  # the package names the image it is for
            self._image = image.target
            self._image_source = "the package's targetImage"
        # imgtool --pad: only the image's own bytes go over the wire; the trailer in the
        # padding is the device's to write ("image test" writes it as MCUboot does).
        payload = image.data[: padding_start(image.data, parsed)]
        total = len(payload)
        transfer_s = 0.0
        resumed = 0
        sent = 0
        self._restarts = 0
        try:
            progress(Progress(Step.CONNECT, 0, total))
            await self._identity_facts()
            self._capacity = self._max_image(self._slot_info)
            if self._capacity and total > self._capacity:
                raise DriverError(
                    DriverCode.IMAGE_TOO_LARGE,
                    f"image is {total} bytes; the device's slot takes {self._capacity}",
                    step,
                )
            slots = await self._state()
            running = active_slot(slots)
            recovery = self._recovery  # the facts read after the reset come from the app
            if recovery:
                step = Step.WRITE
                t0 = time.monotonic()
                sent, resumed = await self._upload(payload, progress)
                transfer_s = time.monotonic() - t0
                step = Step.CHECK
                progress(Progress(Step.CHECK, 0, total))
                self._check_recovered(await self._state(), parsed)
                progress(Progress(Step.CHECK, total, total))
                step = Step.BOOT
                outcome = await self._outcome(parsed, progress, reset=True)
            elif running is not None and running.hash == parsed.hash:
                step = Step.BOOT
                outcome = await self._outcome(parsed, progress, reset=False, slots=slots)
            else:
                staged = find(slots, parsed.hash)
                if staged is None or staged.slot != SECONDARY:
                    step = Step.WRITE
                    t0 = time.monotonic()
                    sent, resumed = await self._upload(payload, progress)
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
                    slots = self._mine(
                        parse_state(
                            await self.link.call(
                                lambda s: smp.state_write(s, parsed.hash, False), "image test"
                            )
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
            slot=PRIMARY if recovery else SECONDARY,
            bytes=total,
            seconds=time.monotonic() - started,
            transfer_seconds=transfer_s,
            wire_bytes_tx=self.link.tx,
            wire_bytes_rx=self.link.rx,
            retransmits=self.link.retransmits,
            resumed_from=resumed,
            running_version=facts.installed_version or "",
            facts=facts,
            details={
                "bytes_sent": sent,
                "padding_skipped": len(image.data) - total,
                "upload_restarts": self._restarts,
                "image": self._image,
            },
        )

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

    async def _upload(self, data: bytes, progress: ProgressFn) -> tuple[int, int]:
        """Upload ``data`` as image N (:class:`~protocols.mcuboot.upload.Upload`)."""
        upload = Upload(self.link, image=self._image, window=self._window())
        try:
            return await upload.run(data, progress)
        finally:
            self._restarts += upload.restarts

    def _check_recovered(self, slots: list[SlotView], parsed: McubootImage) -> None:
        staged = find(slots, parsed.hash)
        if staged is None or staged.slot != PRIMARY:
            raise VerifyError(
                f"after the upload MCUboot does not list image {parsed.hash.hex()[:16]} in "
                "the primary slot: it did not validate (hash or signature)"
            )

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
        return self._mine(parse_state(body))

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
                            smp.Op.WRITE,
                            smp.Group.IMAGE,
                            smp.ImgCmd.ERASE,
                            s,
                            {"slot": 2 * self._image + SECONDARY},
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
    # driver.py and link.py (Timing.from_options)
    options=frozenset(
        {
            "image",
            "buf_size",
            "board",
            "uid_format",
            "uid",
            "slot_size",
            "mode",
            "compat",
            "upload_window",
            "response_timeout_s",
            "erase_timeout_s",
            "boot_timeout_s",
            "retries",
        }
    ),
)

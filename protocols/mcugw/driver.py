"""The ``mcugw`` driver: our protocol's session behind the driver seam.

This is the one place that turns this protocol's wire messages into
:class:`~protocols.driver.DeviceFacts` and its exceptions into error codes and
kinds (:func:`error_code`, codes in :mod:`protocols.mcugw.codes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import time

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
    TransferEncoding,
    no_progress,
)
from protocols.errors import (
    DeviceTimeout,
    LocalProtocolError,
    PortNotFound,
    ProtocolError,
    TransportDisconnected,
)
from protocols.failures import Code, DriverCode
from protocols.mcugw.codes import STATUS_CODES, McugwCode
from protocols.mcugw.constants import Capability as WireCap
from protocols.mcugw.constants import Mode, ResetMode
from protocols.mcugw.constants import SlotState as WireSlot
from protocols.mcugw.encoding import DecodeError, Encoded, parse_stream
from protocols.mcugw.errors import DeviceRejected, UnsupportedVersionError, VerifyFailed
from protocols.mcugw.packets import HelloResponse, InfoResponse
from protocols.mcugw.session import BootloaderSession
from protocols.transport import Transport

NAME = "mcugw"

_STEP_OF_PHASE = {"applying": Step.WRITE, "verifying": Step.CHECK, "rebooting": Step.BOOT}


def error_code(exc: ProtocolError, garbled: bool = False) -> Code:
    """The error code (and with it the kind) for one of this protocol's exceptions.

    ``garbled``: damaged frames arrived while the call waited, so a timeout is a
    damaged link (answers that never arrived whole), not a silent device.
    """
    if isinstance(exc, DeviceTimeout):
        return DriverCode.PROTOCOL_ERROR if garbled else DriverCode.TIMEOUT
    if isinstance(exc, TransportDisconnected | PortNotFound):
        return DriverCode.DISCONNECTED
    if isinstance(exc, DeviceRejected):
        return STATUS_CODES.get(exc.status, McugwCode.REFUSED)
    if isinstance(exc, VerifyFailed):
        return DriverCode.VERIFY_FAILED
    if isinstance(exc, UnsupportedVersionError):
        return McugwCode.PROTOCOL_VERSION
    if isinstance(exc, LocalProtocolError):
        return DriverCode.IMAGE_REJECTED
    # Frame, CRC and sequence errors that outlived the session's retransmissions.
    return DriverCode.PROTOCOL_ERROR


def _slot_state(state: WireSlot) -> SlotState:
    return SlotState(state.name.lower())


def facts_from(hello: HelloResponse, info: InfoResponse) -> DeviceFacts:
    """Translate HELLO + INFO into the gateway's view of the device."""
    geo = info.geometry
    running = info.running_slot if info.running_slot < len(info.slots) else None
    slots = tuple(
        SlotFacts(
            index=i,
            state=_slot_state(s.state),
            version=s.version,
            size=s.size,
            sha256=s.sha256.hex() if s.size else "",
            boot_count=s.boot_count,
            running=i == running,
        )
        for i, s in enumerate(info.slots)
    )
    if running is not None:
        installed: str | None = info.slots[running].version or None
    else:
        confirmed = [s for s in info.slots if s.state is WireSlot.CONFIRMED]
        installed = confirmed[-1].version if confirmed else None
    caps = {Capability.AB_SLOTS, Capability.TRIAL_BOOT, Capability.ROLLBACK,
            Capability.DEVICE_HASH}  # fmt: skip
    wire = hello.capabilities
    if WireCap.RESUME in wire:
        caps.add(Capability.RESUME)
    if WireCap.SET_BAUD in wire:
        caps.add(Capability.SET_BAUD)
    if WireCap.APP_MODE in wire:
        caps.add(Capability.APP_MODE)
    if WireCap.COMPRESS in wire:
        caps.add(Capability.COMPRESS)
    if WireCap.DELTA in wire:
        caps.add(Capability.DELTA)
    return DeviceFacts(
        driver=NAME,
        uid=info.uid.hex(),
        model=info.model,
        compat=info.compat,
        bootloader_version=info.bootloader_version,
        protocol_version=str(hello.protocol_version),
        installed_version=installed,
        capacity=geo.slot_size,
        safety=Safety.AB_ROLLBACK,
        capabilities=frozenset(caps),
        slots=slots,
        in_bootloader=info.mode is Mode.BOOTLOADER,
        details={
            "mode": info.mode.name.lower(),
            "max_data": hello.max_data,
            "window": hello.window,
            "slot_size": geo.slot_size,
            "sector_size": geo.sector_size,
            "write_size": geo.write_size,
            "page_size": geo.page_size,
            "erase_us": geo.erase_us,
            "program_us": geo.program_us,
            "hash_us_per_kib": geo.hash_us_per_kib,
            "boot_ms": geo.boot_ms,
            "max_trial_boots": geo.max_trial_boots,
        },
    )


class McugwDriver:
    """Our protocol over one transport; every public method translates errors once."""

    def __init__(self, transport: Transport, options: DriverOptions) -> None:
        self.options = options
        self._port = transport.name
        self.session = BootloaderSession(transport, options.baud)
        self._garbled0 = 0  # damaged frames seen before the current public call

    def _begin(self) -> None:
        self._garbled0 = self.session.stats.garbled

    def _fail(self, exc: ProtocolError, step: Step, probing: bool = False) -> DriverError:
        if probing and isinstance(exc, DeviceTimeout) and self.session.hello_info is None:
            # Silence, an echo or another protocol's chatter: not an MCU of ours.
            return NoAnswer(str(exc))
        garbled = self.session.stats.garbled > self._garbled0
        return DriverError(error_code(exc, garbled), str(exc), step)

    async def _facts(self) -> DeviceFacts:
        hello = self.session.hello_info
        info = await self.session.info()
        assert hello is not None
        return facts_from(hello, info)

    async def identify(self) -> DeviceFacts:
        self._begin()
        try:
            await self.session.hello()
            return await self._facts()
        except ProtocolError as exc:
            raise self._fail(exc, Step.CONNECT, probing=True) from exc

    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        self._begin()
        step = Step.CONNECT
        started = time.monotonic()

        def on_progress(phase: str, done: int, total: int) -> None:
            nonlocal step
            step = _STEP_OF_PHASE.get(phase, Step.WRITE)
            progress(Progress(step, done, total))

        prepared = None
        if image.delta is not None:
            prepared = _published(image)
        elif hashlib.sha256(image.data).hexdigest() != image.sha256.lower():
            raise DriverError(
                DriverCode.IMAGE_REJECTED, "image bytes do not match their SHA-256", step
            )
        try:
            progress(
                Progress(Step.CONNECT, 0, prepared.image_size if prepared else len(image.data))
            )
            await self.session.connect()
            if self.options.fast_baud:
                await self.session.set_baud(self.options.fast_baud)
            result = await self.session.flash(
                image.data,
                image.version,
                progress=on_progress,
                confirm_timeout=self.options.confirm_timeout_s,
                base=image.base,
                prepared=prepared,
            )
            step = Step.BOOT
            facts = await self._facts()
        except ProtocolError as exc:
            raise self._fail(exc, step) from exc
        return InstallResult(
            outcome=Outcome(result.outcome),
            version=image.version,
            sha256=result.sha256,
            slot=result.slot,
            bytes=result.bytes,
            seconds=time.monotonic() - started,
            transfer_seconds=result.transfer_seconds,
            wire_bytes_tx=result.wire_bytes_tx,
            wire_bytes_rx=result.wire_bytes_rx,
            retransmits=result.retransmits,
            resumed_from=result.resumed_from,
            running_version=result.running_version,
            facts=facts,
            details={
                "chunk": result.chunk,
                "window": result.window,
                "encoding": result.encoding,
                "streamBytes": result.stream_bytes,
            },
            encoding=TransferEncoding(result.encoding),
            payload_bytes=result.stream_bytes,
        )

    async def reboot(self) -> DeviceFacts:
        self._begin()
        try:
            await self.session.hello()
            await self.session.info()  # geometry: boot time for the probes after reset
            await self.session.reset(ResetMode.RUN)
            await self.session.await_boot()
            return await self._facts()
        except ProtocolError as exc:
            raise self._fail(exc, Step.BOOT) from exc

    async def abort(self) -> DeviceFacts:
        self._begin()
        try:
            hello = await self.session.hello()
            if hello.mode is Mode.BOOTLOADER:
                await self.session.info()
                with contextlib.suppress(DeviceRejected):
                    await self.session.abort()  # nothing staged is fine too
        except ProtocolError as exc:
            raise self._fail(exc, Step.CONNECT) from exc
        return await self.reboot()


def _published(image: Image) -> Encoded:
    """A published delta's stream, structure-checked, ready for BEGIN(DELTA)."""
    delta = image.delta
    assert delta is not None
    try:
        return parse_stream(
            delta.stream,
            delta.image_size,
            bytes.fromhex(image.sha256),
            bytes.fromhex(delta.base_sha256),
        )
    except (DecodeError, ValueError) as exc:
        raise DriverError(McugwCode.DELTA_INVALID, f"delta payload: {exc}", Step.CONNECT) from exc


SPEC = DriverSpec(
    name=NAME,
    summary="this project's protocol (docs/protocol.md): A/B slots, resume, trial boot",
    open=McugwDriver,
    probe_rank=10,
    options=frozenset(),  # reads no per-port keys
)

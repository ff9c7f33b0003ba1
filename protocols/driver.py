"""The driver seam: how the gateway talks to any MCU bootloader.

The gateway never sees a protocol's wire messages. It opens a :class:`Driver`
for a port and asks it to identify the device (:class:`DeviceFacts`), install
an image (reporting typed :class:`Progress`), boot it and report an
:class:`Outcome`, reboot it, or abort. Each bootloader protocol implements this
in its own package under ``protocols/`` and registers a :class:`DriverSpec`
(see :mod:`protocols.registry`).

Failures cross the seam as one exception, :class:`DriverError`, whose ``code``
is the twin's ``error.code`` (a member of a :class:`~protocols.failures.Code`
table), whose ``kind`` says what sort of failure it is (the gateway retries by
kind) and whose ``step`` says where it happened. Each driver translates its own
exceptions into it at exactly one place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from protocols.failures import AnyCode, DriverCode, Kind, resolve
from protocols.transport import SerialSettings, Transport


class Phase(enum.StrEnum):
    """The one vocabulary for where an update is: journal, twin and logs use it."""

    DESIRED = "desired"  # parsing the twin's desired firmware
    DOWNLOADING = "downloading"  # fetching the package
    VERIFYING = "verifying"  # hash, signature, compatibility, version policy
    APPLYING = "applying"  # writing the image over the serial link
    REBOOTING = "rebooting"  # booting the new image; waiting for confirm or rollback


class Step(enum.StrEnum):
    """What a driver is doing inside an install; each belongs to one :class:`Phase`."""

    CONNECT = "connect"  # reaching the bootloader (entering it from the app if needed)
    ERASE = "erase"  # erasing the target area
    WRITE = "write"  # transferring the image
    CHECK = "check"  # the device hashes or reads back what was written
    ACTIVATE = "activate"  # marking the new image bootable / for a trial
    BOOT = "boot"  # resetting into the new image and waiting for its verdict

    @property
    def phase(self) -> Phase:
        return Phase.REBOOTING if self is Step.BOOT else Phase.APPLYING

    @property
    def label(self) -> str:
        """Present participle for progress displays ("writing")."""
        return _LABELS[self]


_LABELS = {
    Step.CONNECT: "connecting",
    Step.ERASE: "erasing",
    Step.WRITE: "writing",
    Step.CHECK: "checking",
    Step.ACTIVATE: "activating",
    Step.BOOT: "booting",
}


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: ``done`` of ``total`` bytes in ``step``."""

    step: Step
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


def no_progress(event: Progress) -> None:
    """A :data:`ProgressFn` that ignores every event."""


class Capability(enum.StrEnum):
    """Promises a driver can keep for a device; the twin lists the ones that hold."""

    AB_SLOTS = "ab-slots"  # the new image goes beside the running one
    TRIAL_BOOT = "trial-boot"  # a new image runs on trial until the app confirms it
    ROLLBACK = "rollback"  # an unconfirmed trial reverts to the previous image by itself
    RESUME = "resume"  # an interrupted transfer continues where it stopped
    DEVICE_HASH = "device-hash"  # the device checks the written image's SHA-256 itself
    READBACK = "readback"  # the written image is checked by reading it back
    SET_BAUD = "set-baud"  # the link rate can be raised for the transfer
    APP_MODE = "app-mode"  # the application answers the protocol (e.g. to enter the bootloader)
    COMPRESS = "compress"  # the device decodes compressed transfers
    DELTA = "delta"  # the device applies deltas against the image it runs


class Safety(enum.StrEnum):
    """What a power cut during an update can cost, as the twin's ``mcu.safety`` says it."""

    AB_ROLLBACK = "ab-rollback"  # always a bootable image; a bad image reverts by itself
    AB_MANUAL = "ab-manual"  # always a bootable image; reverting needs a new update
    SINGLE_SLOT = "single-slot"  # the app is erased while writing; a cut leaves only the
    # ROM bootloader until the next update completes


class SlotState(enum.StrEnum):
    EMPTY = "empty"
    WRITING = "writing"
    COMPLETE = "complete"
    TRIAL = "trial"
    CONFIRMED = "confirmed"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class SlotFacts:
    index: int
    state: SlotState
    version: str = ""
    size: int = 0
    sha256: str = ""  # hex, empty when unknown
    boot_count: int | None = None
    running: bool = False


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the gateway knows about one MCU, whatever its bootloader."""

    driver: str  # registry name of the driver that read these facts
    uid: str  # hex unique id; the MCU's IoT Hub identity derives from it
    model: str
    compat: str  # compatibility string a package must match
    bootloader_version: str
    protocol_version: str
    installed_version: str | None  # what the MCU runs (or would boot); None if unknown
    capacity: int  # largest image the device accepts, bytes
    safety: Safety
    capabilities: frozenset[Capability]
    slots: tuple[SlotFacts, ...] = ()
    in_bootloader: bool = False
    #: Driver-specific details shown by ``info`` and ``getInfo``; never used for decisions.
    details: Mapping[str, str | int | bool] = field(default_factory=dict)

    @property
    def installed_sha256(self) -> str | None:
        running = [s for s in self.slots if s.running and s.sha256]
        return running[0].sha256 if running else None


class Outcome(enum.StrEnum):
    """How an install ended once the new image was booted."""

    CONFIRMED = "confirmed"  # the new image runs and is permanent
    ROLLED_BACK = "rolled_back"  # the new image failed its trial; the old one runs again
    UNCONFIRMED = "unconfirmed"  # the new image runs but never confirmed in time


@dataclass(frozen=True, slots=True)
class Image:
    """What to install: the payload and the version the package names for it."""

    data: bytes
    version: str
    sha256: str  # hex of ``data``
    #: The image the device runs, if the gateway has it: a driver that can may
    #: send a delta against it (mcugw §17). Ignored by drivers that cannot.
    base: bytes | None = None
    #: A published delta (``data`` is then empty): only drivers with DELTA take it.
    delta: DeltaPayload | None = None
    #: Which image of a multi-image device this is for, as the package says
    #: (``targetImage``); None: the port's setting. Only ``mcuboot`` has images.
    target: int | None = None


@dataclass(frozen=True, slots=True)
class DeltaPayload:
    """A signed delta package's payload: a patch that turns the base into the image."""

    stream: bytes  # the mcugw block stream (docs/protocol.md §17)
    image_size: int
    base_sha256: str  # hex of the image the patch reads


class TransferEncoding(enum.StrEnum):
    """How the image travelled over the link (the twin's ``transferEncoding``)."""

    RAW = "raw"  # the image bytes as they are
    COMPRESSED = "compressed"  # a compressed stream the device decodes
    DELTA = "delta"  # a patch against the image the device runs


@dataclass(frozen=True, slots=True)
class InstallResult:
    """The figures of one install; the same keys for every driver (``flash --json``)."""

    outcome: Outcome
    version: str
    sha256: str  # hex of the image written
    slot: int  # slot written (0 on a single-slot device)
    bytes: int
    seconds: float
    transfer_seconds: float
    wire_bytes_tx: int
    wire_bytes_rx: int
    retransmits: int
    resumed_from: int
    running_version: str
    facts: DeviceFacts  # read again after the outcome
    #: Driver-specific figures (e.g. chunk and window sizes); never used for decisions.
    details: Mapping[str, str | int | float] = field(default_factory=dict)
    encoding: TransferEncoding = TransferEncoding.RAW
    #: Image payload bytes the transfer sent (the encoded stream's size); None: ``bytes``.
    payload_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONFIRMED

    @property
    def sent_payload_bytes(self) -> int:
        return self.bytes if self.payload_bytes is None else self.payload_bytes


class DriverError(Exception):
    """Any failure of a driver, named for the twin: ``code`` is ``error.code``.

    ``code`` is a member of a :class:`~protocols.failures.Code` table (a plug-in
    declares its own) and ``kind`` is that code's kind, so one code always means
    one kind (a :class:`~protocols.failures.FamilyCode` takes its family's). A
    string that no loaded table or family declares is a driver bug: it is
    refused here rather than reported under a code nobody can look up.
    """

    def __init__(self, code: AnyCode | str, message: str, step: Step = Step.CONNECT) -> None:
        super().__init__(message)
        member = resolve(code)
        if member is None:
            raise ValueError(f"error code {code!r} is in no code table (protocols.failures)")
        self.code: AnyCode = member
        self.kind: Kind = member.kind
        self.message = message
        self.step = step

    @property
    def phase(self) -> Phase:
        return self.step.phase


class NoAnswer(DriverError):
    """Nothing that speaks this driver's protocol answered (used by auto-detection)."""

    def __init__(self, message: str) -> None:
        super().__init__(DriverCode.NO_ANSWER, message, Step.CONNECT)


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """Per-port settings a driver may use; unknown keys are ignored by drivers."""

    baud: int = 115200
    #: Faster rate for the transfer, if the driver and device support switching.
    fast_baud: int = 0
    #: How long the app may take after its trial boot before it must confirm.
    confirm_timeout_s: float = 10.0
    #: Driver-specific keys from the ``[serial]`` config (e.g. reset/boot0 wiring).
    extra: Mapping[str, str | int | bool] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    """One open conversation with one MCU over one transport."""

    async def identify(self) -> DeviceFacts:
        """Read the device's facts without changing what it runs."""
        ...

    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        """Write, check and boot ``image``; returns once the outcome is known.

        Raises :class:`DriverError` on failure. The device keeps a bootable image
        whenever its :class:`Safety` promises one.
        """
        ...

    async def reboot(self) -> DeviceFacts:
        """Start the installed application; returns the facts read afterwards."""
        ...

    async def abort(self) -> DeviceFacts:
        """Drop any staged transfer and start the installed application."""
        ...


def line_8n1(options: DriverOptions) -> SerialSettings:
    """The usual line settings: 8N1 at the configured rate."""
    return SerialSettings(baud=options.baud)


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """A registered driver: its name, how to open its link, and its constructor."""

    name: str
    summary: str
    open: Callable[[Transport, DriverOptions], Driver]
    #: Line settings the protocol needs (e.g. 8E1 for the STM32 ROM bootloader).
    serial: Callable[[DriverOptions], SerialSettings] = line_8n1
    #: Rough rank in the auto-detect order: lower is tried first. A probe must not
    #: change what the device runs nor confuse a device of another kind.
    probe_rank: int = 50
    #: The per-port option keys (``DriverOptions.extra``) the driver reads, so a
    #: misspelt one is refused (``registry.check_options``); None: not declared.
    options: frozenset[str] | None = None


__all__ = [
    "Capability",
    "DeviceFacts",
    "Driver",
    "DriverError",
    "DriverOptions",
    "DriverSpec",
    "Image",
    "InstallResult",
    "NoAnswer",
    "Outcome",
    "Phase",
    "Progress",
    "ProgressFn",
    "Safety",
    "SlotFacts",
    "SlotState",
    "Step",
    "TransferEncoding",
    "line_8n1",
    "no_progress",
]

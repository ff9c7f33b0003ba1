"""In-memory stand-ins for the agent's two seams (twin link, MCU) and the package source.

They implement :class:`gateway.seams.TwinLink` and :class:`protocols.driver.Driver`
with just enough behaviour to test the orchestration's decisions without a
hub, a serial port or the network: the link merges reports into ``state`` (the
twin as a perfect hub would hold it), the MCU keeps two slots and boots what
it is flashed with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from firmware import keys, package
from firmware.cache import ContentCache
from firmware.errors import FirmwareError
from gateway import mergepatch
from gateway.discovery import Probe
from gateway.seams import MethodHandler
from protocols import registry
from protocols.driver import (
    Capability,
    DeviceFacts,
    Driver,
    DriverError,
    DriverOptions,
    Image,
    InstallResult,
    Outcome,
    Progress,
    ProgressFn,
    Safety,
    SlotFacts,
    SlotState,
    Step,
    no_progress,
)

MODEL = "vmcu-f4"
COMPAT = f"contoso:{MODEL}:B"
CAPACITY = 256 * 1024

JsonObject = dict[str, Any]


class FakeLink:
    """A twin link to a hub that is always right; ``hub_down`` makes ``report_now`` hang."""

    def __init__(self, device_id: str = "mcu-1", firmware: Any = None,
                 reported: JsonObject | None = None) -> None:  # fmt: skip
        self.device_id = device_id
        self.connected = True
        self.hub_down = False
        self.state: JsonObject = dict(reported or {})
        self.reports: list[tuple[JsonObject, bool]] = []
        self.methods: dict[str, MethodHandler] = {}
        self._desired: JsonObject = {} if firmware is None else {"firmware": firmware}
        self._version = 1
        self._patches: asyncio.Queue[JsonObject | None] = asyncio.Queue()
        self._changed = asyncio.Condition()

    @property
    def desired(self) -> JsonObject:
        return {**self._desired, "$version": self._version}

    @property
    def firmware(self) -> JsonObject:
        fw = self.state.get("firmware")
        return fw if isinstance(fw, dict) else {}

    def set_desired(self, firmware: Any) -> None:
        self._version += 1
        self._desired = {"firmware": firmware}
        self._patches.put_nowait({"firmware": firmware, "$version": self._version})

    async def connect(self) -> None:
        pass

    async def get_twin(self) -> JsonObject:
        return {"desired": self.desired, "reported": self.state}

    async def desired_patches(self) -> AsyncIterator[JsonObject]:
        while (patch := await self._patches.get()) is not None:
            yield patch

    async def report(self, patch: JsonObject, *, urgent: bool = False) -> None:
        self.reports.append((patch, urgent))
        self.state = mergepatch.apply(self.state, patch)
        async with self._changed:
            self._changed.notify_all()

    async def report_now(self, patch: JsonObject) -> None:
        """What the agent must not use for transitions: it waits for the hub's answer."""
        if self.hub_down:
            await asyncio.Event().wait()  # the hub never answers
        await self.report(patch)

    def on_method(self, name: str, handler: MethodHandler) -> None:
        self.methods[name] = handler

    async def close(self, flush_timeout: float = 2.0) -> None:
        self._patches.put_nowait(None)

    async def wait_for(self, predicate: Callable[[FakeLink], Any], within: float = 10.0) -> Any:
        async with asyncio.timeout(within), self._changed:
            while not (result := predicate(self)):
                await self._changed.wait()
        return result

    def firmware_reports(self) -> list[JsonObject]:
        return [p["firmware"] for p, _ in self.reports if "firmware" in p]


class FakeMcu:
    """Two slots; an install writes the other slot, boots it and the app confirms."""

    def __init__(self, version: str = "1.0.0", uid: bytes = b"\x0a\x1b\x2c\x3d") -> None:
        self.uid = uid
        digest = hashlib.sha256(version.encode()).hexdigest()
        self.slots = [
            SlotFacts(0, SlotState.CONFIRMED, version, 1000, digest, 1),
            SlotFacts(1, SlotState.EMPTY),
        ]
        self.running = 0
        self.in_bootloader = False
        self.flashed: list[str] = []  # versions whose install began, in order
        self.bases: list[bytes | None] = []  # Image.base of each install: a delta's base
        self.hold: asyncio.Event | None = None  # an install waits here after its first bytes
        self.flashing = asyncio.Event()  # set when an install has begun
        self.failures: list[DriverError] = []  # raised by the next installs, in order
        self.sessions = 0
        #: False: the app never confirms; a flashed image keeps running on trial (as
        #: MCUboot's test image does) until power_cycle() reverts it.
        self.confirms = True
        self.lies = False  # the driver says CONFIRMED whatever the MCU runs
        #: The version an install leaves in its slot if not the image's (a device that
        #: kept the old one for the same bytes: issue 23.1).
        self.records_version: str | None = None
        self.safety = Safety.AB_ROLLBACK  # SINGLE_SLOT: an install erases the app first
        self.off = False  # powered off: nothing answers
        self.off_on_failure = False  # an injected install failure also powers it off

    @property
    def version(self) -> str:
        return self.slots[self.running].version

    def set_slot(self, index: int, version: str, size: int = 5000) -> None:
        digest = hashlib.sha256(version.encode()).hexdigest()
        self.slots[index] = SlotFacts(index, SlotState.CONFIRMED, version, size, digest, 1)

    def power_cycle(self) -> None:
        """A reset: an unconfirmed trial image is reverted, as a bootloader does."""
        if self.slots[self.running].state is SlotState.TRIAL:
            self.slots[self.running] = dataclasses.replace(
                self.slots[self.running], state=SlotState.INVALID
            )
            self.running = 1 - self.running

    def facts(self) -> DeviceFacts:
        return DeviceFacts(
            driver="fake", uid=self.uid.hex(), model=MODEL, compat=COMPAT,
            bootloader_version="1.0.0", protocol_version="1",
            installed_version=self.version or None, capacity=CAPACITY, safety=self.safety,
            capabilities=frozenset({Capability.AB_SLOTS, Capability.TRIAL_BOOT,
                                    Capability.ROLLBACK, Capability.RESUME}),
            slots=tuple(dataclasses.replace(s, running=s.index == self.running)
                        for s in self.slots),
            in_bootloader=self.in_bootloader,
        )  # fmt: skip

    def probe(self) -> Probe:
        spec = registry.get("mcugw")  # never opened: the agent gets open_driver=self.open
        return Probe("fake-port", spec, DriverOptions(), self.facts())

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Driver]:
        self.sessions += 1
        yield FakeDriver(self)


class FakeDriver:
    def __init__(self, mcu: FakeMcu) -> None:
        self.mcu = mcu

    def _answer(self) -> None:
        if self.mcu.off:
            raise DriverError("MCU_DISCONNECTED", "port closed (MCU unplugged or off)")

    async def identify(self) -> DeviceFacts:
        self._answer()
        return self.mcu.facts()

    async def reboot(self) -> DeviceFacts:
        self._answer()
        self.mcu.in_bootloader = False
        return self.mcu.facts()

    async def abort(self) -> DeviceFacts:
        return await self.reboot()

    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        mcu = self.mcu
        running = mcu.slots[mcu.running]
        if running.state is SlotState.TRIAL and running.sha256 == image.sha256:
            # The image runs on trial already: wait for its verdict again, write nothing.
            outcome = Outcome.CONFIRMED if mcu.lies else Outcome.UNCONFIRMED
            return self._result(image, outcome, mcu.running, 0)
        mcu.flashed.append(image.version)
        mcu.bases.append(image.base)
        mcu.flashing.set()
        mcu.in_bootloader = True
        target = 1 - mcu.running
        size = len(image.data) if image.delta is None else image.delta.image_size
        mcu.slots[target] = SlotFacts(target, SlotState.WRITING, image.version, size)
        progress(Progress(Step.CONNECT, 0, size))
        if mcu.safety is Safety.SINGLE_SLOT:  # the app and its version go first
            progress(Progress(Step.ERASE, 0, size))
            mcu.slots[mcu.running] = SlotFacts(mcu.running, SlotState.INVALID)
        progress(Progress(Step.WRITE, 0, size))
        if mcu.hold is not None:
            await mcu.hold.wait()
        if mcu.failures:
            mcu.off = mcu.off_on_failure
            raise mcu.failures.pop(0)
        progress(Progress(Step.WRITE, size, size))
        progress(Progress(Step.BOOT, size, size))
        state = SlotState.CONFIRMED if mcu.confirms else SlotState.TRIAL
        version = mcu.records_version or image.version
        mcu.slots[target] = SlotFacts(target, state, version, size, image.sha256, 1)
        mcu.running, mcu.in_bootloader = target, False
        confirmed = mcu.confirms or mcu.lies
        return self._result(
            image, Outcome.CONFIRMED if confirmed else Outcome.UNCONFIRMED, target, size
        )

    def _result(self, image: Image, outcome: Outcome, slot: int, size: int) -> InstallResult:
        mcu = self.mcu
        return InstallResult(
            outcome=outcome, version=image.version, sha256=image.sha256, slot=slot,
            bytes=size, seconds=0.5, transfer_seconds=0.4, wire_bytes_tx=size, wire_bytes_rx=64,
            retransmits=0, resumed_from=0, running_version=mcu.version, facts=mcu.facts(),
        )  # fmt: skip


class FakeDownloader:
    """Packages by URL; ``failures[url]`` lists errors the next fetches raise, in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = ContentCache(root / "cache", 1 << 26)  # the automatic deltas' bases
        self.packages: dict[str, bytes] = {}
        self.failures: dict[str, list[FirmwareError]] = {}
        self.fetches: list[str] = []

    @contextlib.asynccontextmanager
    async def fetch(self, url: str, sha256_hex: str, *, max_size: int, deadline_s: float,
                    expected_size: int | None = None, progress: Any = None,
                    ) -> AsyncIterator[Path]:  # fmt: skip
        self.fetches.append(url)
        queued = self.failures.get(url)
        if queued:
            raise queued.pop(0)
        path = self.root / hashlib.sha256(url.encode()).hexdigest()
        path.write_bytes(self.packages[url])
        yield path


@dataclasses.dataclass(frozen=True)
class Release:
    version: str
    url: str
    blob: bytes

    def desired(self, **extra: Any) -> JsonObject:
        return {
            "fwVersion": self.version,
            "fwPackageURI": self.url,
            "fwPackageCheckValue": hashlib.sha256(self.blob).hexdigest(),
            "fwPackageSize": len(self.blob),
            **extra,
        }


def release(downloader: FakeDownloader, key: keys.PrivateKey, version: str,
            size: int = 4096) -> Release:  # fmt: skip
    payload = hashlib.sha256(version.encode()).digest() * (size // 32)
    manifest = package.manifest_for(
        payload, provider="contoso", name="sensor-app", version=version,
        manufacturer="contoso", model=MODEL,
    )  # fmt: skip
    blob = package.build(manifest, payload, key)
    url = f"https://user:s3cr3t@cdn.example/fw/{version}.mcufw?sv=1&sig=s3cr3t-sig"
    downloader.packages[url] = blob
    return Release(version, url, blob)

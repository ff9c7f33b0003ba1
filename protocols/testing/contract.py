"""The driver contract: what every bootloader driver must do behind the seam.

Each check takes a :class:`Target` (a driver and a way to start a device for
it: a simulator process, or a board on a bench) and raises AssertionError
naming the broken promise. The built-in drivers run every check against their
simulators (``tests/protocols/test_driver_contract.py``); a plug-in package runs
the same checks against its own simulator with a few lines::

    import pytest
    from protocols.testing.contract import CHECKS
    from simulators.testing import simulated

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    async def test_contract(tmp_path, check):
        await check(simulated("mybl", tmp_path))

What is checked (see :mod:`protocols.driver`): identify reads facts without
changing what the device runs; install writes, checks and boots an image and
reports figures and progress the gateway can use; reboot and abort leave the
installed image running; every failure is a :class:`~protocols.driver.DriverError`
whose code is declared in a code table, with the kind the gateway retries by:
an image refused before writing is ``image``, an unplug mid-install is
``disconnected`` or ``timeout``, a damaged link is ``link``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from protocols import registry
from protocols.driver import (
    DeviceFacts,
    Driver,
    DriverError,
    DriverOptions,
    DriverSpec,
    Image,
    Outcome,
    Progress,
    Step,
)
from protocols.failures import Kind, resolve

#: Every check is bounded: a driver that hangs fails the check instead of the suite.
CHECK_TIMEOUT_S = 120.0

#: Starts the device (with extra simulator arguments, e.g. faults) and yields its port.
DeviceStarter = Callable[[Sequence[str]], contextlib.AbstractAsyncContextManager[str]]


@dataclass(frozen=True)
class Target:
    """A driver under test and a device for it."""

    spec: DriverSpec
    options: DriverOptions
    start: DeviceStarter
    #: Wraps a payload into the image the driver installs (e.g. a signed container).
    make_image: Callable[[bytes, str], bytes] = field(default=lambda payload, version: payload)
    #: Device arguments that damage the bytes it sends (None: the device cannot).
    damaged_link: Sequence[str] | None = None
    #: Payload size of the test images.
    size: int = 12 * 1024

    def image(self, version: str, seed: int = 1) -> Image:
        payload = random.Random(f"{seed}/{version}").randbytes(self.size)
        data = self.make_image(payload, version)
        return Image(data, version, hashlib.sha256(data).hexdigest())

    @contextlib.asynccontextmanager
    async def driver(self, *device_args: str) -> AsyncIterator[Driver]:
        async with (
            self.start(device_args) as port,
            registry.open_driver(port, self.spec, self.options) as driver,
        ):
            yield driver


Check = Callable[[Target], Awaitable[None]]


def _declared(exc: DriverError, what: str) -> None:
    typed = resolve(str(exc.code))
    assert typed is not None, f"{what}: code {exc.code!r} is in no code table"
    assert typed.kind is exc.kind, f"{what}: kind {exc.kind} is not {exc.code}'s {typed.kind}"


async def _failure(call: Awaitable[object], what: str) -> DriverError:
    """The DriverError ``call`` must end with, its code checked against the tables."""
    try:
        await call
    except DriverError as exc:
        _declared(exc, what)
        return exc
    raise AssertionError(f"{what} succeeded")


def _same_image(before: DeviceFacts, after: DeviceFacts, what: str) -> None:
    assert (after.installed_version, after.installed_sha256) == (
        before.installed_version,
        before.installed_sha256,
    ), f"{what} changed what the device runs: {before.installed_version} -> " + str(
        after.installed_version
    )


async def identify_reads_facts_without_changing_the_device(target: Target) -> None:
    async with asyncio.timeout(CHECK_TIMEOUT_S), target.driver() as driver:
        first = await driver.identify()
        second = await driver.identify()
    assert first.driver == target.spec.name, f"facts name driver {first.driver!r}"
    assert first.uid and int(first.uid, 16) >= 0, f"uid {first.uid!r} is not hex"
    assert first.model, "no model"
    assert first.capacity >= target.size, f"capacity {first.capacity} < a {target.size} B image"
    assert first.uid == second.uid
    _same_image(first, second, "identify")


async def install_boots_the_image_and_reports_it(target: Target) -> None:
    image = target.image("2.0.0")
    events: list[Progress] = []
    async with asyncio.timeout(CHECK_TIMEOUT_S), target.driver() as driver:
        await driver.identify()
        result = await driver.install(image, events.append)
        after = await driver.identify()
    assert result.outcome is Outcome.CONFIRMED, f"outcome {result.outcome}"
    assert result.ok
    assert (result.version, result.sha256) == (image.version, image.sha256)
    assert result.bytes == len(image.data), f"bytes {result.bytes} != {len(image.data)}"
    assert result.running_version == image.version
    assert result.facts.installed_version == image.version, "facts after install"
    assert after.installed_version == image.version, "identify after install"
    assert result.wire_bytes_tx >= len(image.data) * 0.5 or result.encoding.value != "raw"
    assert 0 <= result.transfer_seconds <= result.seconds
    assert result.sent_payload_bytes > 0
    writes = [e for e in events if e.step is Step.WRITE]
    assert writes, "no WRITE progress"
    assert all(a.done <= b.done for a, b in itertools.pairwise(writes)), "WRITE went back"
    assert writes[-1].done == writes[-1].total, "WRITE progress never reached its total"
    steps = [e.step for e in events]
    if Step.BOOT in steps:
        last_boot = len(steps) - 1 - steps[::-1].index(Step.BOOT)
        assert steps.index(Step.WRITE) < last_boot, "no BOOT after WRITE"


async def a_corrupt_image_is_refused_before_writing(target: Target) -> None:
    image = target.image("2.0.0")
    bad = Image(image.data, image.version, hashlib.sha256(b"other").hexdigest())
    async with asyncio.timeout(CHECK_TIMEOUT_S), target.driver() as driver:
        before = await driver.identify()
        exc = await _failure(driver.install(bad), "install of bytes that miss their SHA-256")
        assert exc.kind is Kind.IMAGE, f"kind {exc.kind} ({exc.code}), expected image"
        after = await driver.identify()
    _same_image(before, after, "a refused install")


async def reboot_and_abort_leave_the_image_running(target: Target) -> None:
    async with asyncio.timeout(CHECK_TIMEOUT_S), target.driver() as driver:
        await driver.install(target.image("2.0.0"))
        rebooted = await driver.reboot()
        aborted = await driver.abort()
    assert rebooted.installed_version == "2.0.0", f"reboot: {rebooted.installed_version}"
    assert aborted.installed_version == "2.0.0", f"abort: {aborted.installed_version}"


async def an_unplug_mid_install_is_a_transient_driver_error(target: Target) -> None:
    image = target.image("2.0.0")
    writing = asyncio.Event()

    def progress(event: Progress) -> None:
        if event.step is Step.WRITE and event.done > 0:
            writing.set()

    async with asyncio.timeout(CHECK_TIMEOUT_S):
        device = target.start(())
        port = await device.__aenter__()
        unplugged = False
        try:
            async with registry.open_driver(port, target.spec, target.options) as driver:
                install = asyncio.create_task(driver.install(image, progress))
                waiter = asyncio.create_task(writing.wait())
                await asyncio.wait({install, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                assert not install.done(), "install ended before any WRITE progress"
                await device.__aexit__(None, None, None)  # the cable is pulled
                unplugged = True
                exc = await _failure(install, "install while unplugged")
                assert exc.kind.transient, f"{exc.code} ({exc.kind}) would not be retried"
        finally:
            if not unplugged:
                await device.__aexit__(None, None, None)


async def a_damaged_link_is_kind_link(target: Target) -> None:
    if target.damaged_link is None:
        raise AssertionError("the target declares no way to damage its link")
    async with asyncio.timeout(CHECK_TIMEOUT_S), target.driver(*target.damaged_link) as driver:
        exc = await _failure(driver.install(target.image("2.0.0")), "install over a damaged link")
        assert exc.kind is Kind.LINK, f"{exc.code} ({exc.kind}): {exc.message}"


#: Every check, in a sensible order; each starts its own device.
CHECKS: tuple[Check, ...] = (
    identify_reads_facts_without_changing_the_device,
    install_boots_the_image_and_reports_it,
    a_corrupt_image_is_refused_before_writing,
    reboot_and_abort_leave_the_image_running,
    an_unplug_mid_install_is_a_transient_driver_error,
    a_damaged_link_is_kind_link,
)

__all__ = ["CHECKS", "CHECK_TIMEOUT_S", "Check", "DeviceStarter", "Target"]

"""Run the hub emulator in a background thread with its own event loop.

Tests and the gateway's end-to-end suite drive it from synchronous code (the
service SDK is blocking) or from another event loop (the device SDK's aio
client); either way nothing they do can stall the emulator's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from simulators.hub.errors import StartupError
from simulators.hub.iothub import TelemetryMessage, TwinFault
from simulators.hub.registry import Device, Enrollment, EnrollmentKind
from simulators.hub.sas import derive_device_key
from simulators.hub.server import HubFacts, HubServer
from simulators.hub.throttling import Tier
from simulators.hub.timing import Timing
from simulators.hub.twins import Twin

T = TypeVar("T")
_CALL_TIMEOUT = 30.0


class HubEmulator:
    """IoT Hub + DPS on ``host``:8883 (and REST on a port of the same host).

    ``start``/``stop`` may alternate; state persists in ``state_dir`` across them.
    """

    def __init__(
        self,
        state_dir: Path | str,
        host: str = "127.0.4.1",
        *,
        time_scale: float = 1.0,
        tier: Tier = Tier.S1,
        units: int = 1,
        content_merge: bool = False,
    ) -> None:
        """``time_scale`` speeds up every cadence of the hub together (see
        :mod:`simulators.hub.timing`); 1.0 is IoT Hub's own pace."""
        self.state_dir = Path(state_dir)
        self.host = host
        self.timing = Timing(time_scale)
        self.tier, self.units, self.content_merge = tier, units, content_merge
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HubServer | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = _CALL_TIMEOUT) -> HubFacts:
        if self._thread is not None:
            raise StartupError("hub emulator already running")
        started: concurrent.futures.Future[HubFacts] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"hub-emulator-{self.host}", daemon=True
        )
        self._thread.start()
        try:
            return started.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            self._thread = None
            raise

    def _run(self, started: concurrent.futures.Future[HubFacts]) -> None:
        asyncio.run(self._main(started))

    async def _main(self, started: concurrent.futures.Future[HubFacts]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = HubServer(
            self.state_dir, self.host, timing=self.timing, tier=self.tier, units=self.units,
            content_merge=self.content_merge,
        )  # fmt: skip
        try:
            facts = await server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        self._server = server
        started.set_result(facts)
        try:
            await self._stop.wait()
        finally:
            self._server = None
            await server.stop()

    def stop(self, timeout: float = _CALL_TIMEOUT) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise StartupError(f"hub emulator did not stop within {timeout}s")
        self._thread = self._loop = self._stop = None

    def restart(self) -> HubFacts:
        self.stop()
        return self.start()

    def __enter__(self) -> HubEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ calling in

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run a coroutine on the emulator's loop and wait, bounded, for its result."""
        if self._loop is None:
            coro.close()
            raise StartupError("hub emulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[HubServer], T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run ``fn(server)`` on the emulator's loop, where all its state lives."""

        async def invoke() -> T:
            if self._server is None:
                raise StartupError("hub emulator is not running")
            return fn(self._server)

        return self.run(invoke(), timeout)

    @property
    def facts(self) -> HubFacts:
        return self.call(lambda s: s.facts)

    # ------------------------------------------------------------ identities

    def create_device(self, device_id: str) -> str:
        """Register a device and return its connection string."""
        device = self.call(lambda s: s.hub.put_device(Device(device_id)))
        return self.facts.device_connection_string(device_id, device.primary_key)

    def create_enrollment(
        self, name: str, kind: EnrollmentKind = EnrollmentKind.INDIVIDUAL
    ) -> Enrollment:
        return self.call(lambda s: s.dps.enroll(Enrollment(kind, name)))

    def group_device_key(self, registration_id: str) -> str:
        """The key a device registering through the default group enrollment uses."""
        return derive_device_key(self.facts.group_enrollment_key, registration_id)

    def device(self, device_id: str) -> Device:
        return self.call(lambda s: s.hub.device(device_id))

    def twin(self, device_id: str) -> Twin:
        return self.call(lambda s: s.hub.get_twin(device_id))

    def telemetry(self, device_id: str) -> list[TelemetryMessage]:
        return self.call(lambda s: list(s.hub.telemetry.get(device_id, ())))

    def reported_patches(self, device_id: str) -> list[dict[str, Any]]:
        """Reported-property PATCHes the device sent, oldest first (bounded)."""
        return self.call(lambda s: list(s.hub.reported_log.get(device_id, ())))

    def is_connected(self, device_id: str) -> bool:
        return self.call(lambda s: s.hub.is_connected(device_id))

    # ------------------------------------------------------------ waiting

    def wait_for(self, predicate: Callable[[HubServer], Any], timeout: float) -> Any:
        """Block until ``predicate(server)`` is truthy, re-checked on every hub change."""

        async def waiter() -> Any:
            if self._server is None:
                raise StartupError("hub emulator is not running")
            server = self._server
            return await server.wait_for(lambda: predicate(server), timeout)

        return self.run(waiter(), timeout + 1.0)

    def wait_connected(self, device_id: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda s: s.hub.is_connected(device_id), timeout)

    def wait_disconnected(self, device_id: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda s: not s.hub.is_connected(device_id), timeout)

    # ------------------------------------------------------------ fault injection

    def drop_connections(self) -> int:
        """Abort every MQTT connection (hub and DPS); sessions and twins persist."""
        return self.call(lambda s: s.broker.drop_all())

    def drop_sessions(self) -> int:
        """Forget every device's MQTT session and subscriptions, then drop the devices."""
        return self.call(lambda s: s.hub.drop_sessions())

    def set_twin_fault(self, delay: float = 0.0, status: int | None = None) -> None:
        """Delay twin responses and/or answer them with ``status``; defaults clear it."""
        fault = TwinFault(delay, status)

        def apply(s: HubServer) -> None:
            s.hub.twin_fault = fault

        self.call(apply)

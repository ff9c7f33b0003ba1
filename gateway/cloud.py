"""One IoT Hub device connection per MCU (and one for the gateway), behind our own API.

:class:`DeviceTwinLink` wraps ``azure.iot.device.aio.IoTHubDeviceClient`` the
way aiomqtt wraps paho: SDK callbacks are handed to our event loop and fed to
queues, every SDK call has a bounded wait, and SDK exceptions become
:mod:`gateway.errors` at this one boundary. The updater never sees SDK types::

    link = link_for(credentials, LinkOptions.from_settings(config.hub))
    async with link:                               # connect() ... close()
        link.on_method("getInfo", handler)         # async (payload) -> (status, payload)
        twin = await link.get_twin()               # {"desired": {...}, "reported": {...}}
        async for patch in link.desired_patches(): # merge patches incl. "$version"
            await link.report({"firmware": {"progress": 40}})      # coalesced, ~1/s
            await link.report({"firmware": {"fwUpdateStatus": "applying"}}, urgent=True)
            await link.report_now({"firmware": {"fwUpdateStatus": "current"}})  # waits for ack

Desired properties. ``desired_patches()`` yields JSON merge patches with a
``$version`` that only ever increases and never repeats a version already
returned by ``get_twin()``; each patch takes the caller from the previous
state to the new one (so merging them with :func:`gateway.mergepatch.apply`
tracks the twin exactly). After every reconnect the link re-reads the twin and,
if desired changed while offline, yields the difference (deletions as
``None``). A gap in versions triggers the same re-read.

Subscriptions after a reconnect. The SDK subscribes once, when a handler is
first set, and relies on the hub's persistent MQTT session afterwards. A hub
that restarted or lost the session would leave the device deaf (no desired
patches, every direct method 404) until the next drop. So after every
reconnect the link sends SUBSCRIBE again for twin responses, desired patches
and methods (idempotent on a hub that kept the session), and only then
re-reads the twin, so nothing that changed in between is missed. The SDK's own
reconnect catch-up is turned off (``ensure_desired_properties=False``) because
it delivers whole documents that look like patches, which loses deletions.

Reported properties. ``report()`` merges into a pending patch and returns at
once; a background task sends at most one PATCH per ``report_interval_s``
(``urgent=True`` skips that wait, for status transitions). The patches carry
the times of the events they describe, so queueing never shifts them.
A PATCH that fails for connection reasons is kept and resent after the
reconnect, so nothing is lost while the process lives; one the hub refuses
(4xx) is dropped with an error log, since resending it cannot succeed.
Status transitions are never merged away (:mod:`gateway.reports`).
``report_now()`` merges and flushes immediately; if the hub is unreachable it
raises :class:`CloudTimeout` but the patch stays pending and is still sent.

Direct methods. Handlers registered with ``on_method`` run on our loop; an
unknown method answers 404, a handler exception 500, a handler timeout 504.

Threads: the SDK runs handler coroutines on one shared loop thread per
process, so all handlers here are coroutines that only hop to our loop
(function handlers would get a 4-thread pool per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self

from gateway import mergepatch
from gateway.config import HubSettings
from gateway.errors import CloudAuthError, CloudDisconnected, CloudError, CloudTimeout
from gateway.identity import DeviceCredentials
from gateway.reports import ReportQueue
from gateway.seams import MethodHandler
from protocols.backoff import Backoff

__all__ = ["DeviceTwinLink", "LinkOptions", "MethodHandler", "link_for"]

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
#: Waits between attempts when a resend, re-subscribe or twin re-read keeps failing.
_BACKOFF = Backoff(0.5, 30.0)
# SDK feature names (azure.iot.device.iothub.pipeline.constant) subscribed again after a
# reconnect: twin responses, desired patches, direct methods.
_FEATURES = ("twin", "twin_patches", "methods")


@dataclass(frozen=True)
class LinkOptions:
    connect_timeout_s: float = 30.0
    call_timeout_s: float = 15.0  # GET, PATCH, method responses
    report_interval_s: float = 1.0  # minimum spacing of coalesced reported PATCHes
    retry_interval_s: int = 10  # SDK reconnect interval after a drop
    keep_alive_s: int = 60
    method_timeout_s: float = 30.0  # our handler's budget before we answer 504
    #: SDK product_info; a "dtmi:" model id makes the device a PnP device (ADU: gateway/adu).
    product_info: str = ""

    @classmethod
    def from_settings(cls, hub: HubSettings) -> Self:
        return cls(
            connect_timeout_s=hub.connect_timeout_s,
            call_timeout_s=hub.call_timeout_s,
            report_interval_s=hub.report_interval_s,
            retry_interval_s=hub.retry_interval_s,
            keep_alive_s=hub.keep_alive_s,
        )


def link_for(credentials: DeviceCredentials, options: LinkOptions | None = None) -> DeviceTwinLink:
    """A not yet connected link for credentials from :mod:`gateway.identity`."""
    return DeviceTwinLink(credentials, options or LinkOptions())


def _refused_by_hub(exc: BaseException, service_error: type[BaseException]) -> bool:
    """Did the hub answer with an error status that resending cannot cure (4xx, not 429)?

    The SDK's aio client wraps the twin operation's ``ServiceError`` (message ending in
    the status) in a ``ClientError``, so the whole cause chain is searched.
    """
    cause = exc.__cause__
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, service_error):
            status = re.search(r"status (\d{3})", str(cause))
            return status is None or (400 <= int(status[1]) < 500 and int(status[1]) != 429)
        cause = cause.__cause__
    return False


class DeviceTwinLink:
    """One device's MQTT connection: twin, reported coalescing, desired patches, methods."""

    def __init__(self, credentials: DeviceCredentials, options: LinkOptions) -> None:
        self.credentials = credentials
        self.options = options
        self.device_id = credentials.device_id
        self.reconnects = 0  # completed reconnects after a drop (for metrics and tests)
        self.sent_patches = 0  # reported PATCHes acknowledged by the hub
        self.resubscribes = 0  # completed re-subscriptions after reconnects
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._connected = asyncio.Event()
        self._need_catch_up = False
        self._subscribed = False
        # desired state as last delivered or read; version 0 means "not read yet"
        self._desired: JsonObject = {}
        self._desired_version = 0
        self._exposed_version = 0
        self._desired_queue: asyncio.Queue[JsonObject | None] = asyncio.Queue()
        # reported coalescing: see gateway.reports
        self._pending = ReportQueue()
        self._in_flight = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._urgent = False
        self._last_send = float("-inf")
        self._methods: dict[str, MethodHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        """Connect once (bounded); afterwards the SDK reconnects by itself after drops.

        Raises :class:`CloudAuthError` for refused credentials, :class:`CloudTimeout`
        or :class:`CloudError` otherwise; the link may be connected again or closed.
        """
        if self._closed:
            raise CloudDisconnected(f"{self.device_id}: link is closed")
        self._loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = self._make_client()
        async with self._sdk_call("connect", self.options.connect_timeout_s):
            await self._client.connect()
        if not self._subscribed:
            # The SDK's receive-handler setters subscribe synchronously (blocking, unbounded),
            # so they run in a worker thread, after connect, under our own bound.
            async with self._sdk_call("subscribe", self.options.call_timeout_s):
                await asyncio.to_thread(self._install_receive_handlers, self._client)
            self._subscribed = True
        self._need_catch_up = False
        self._set_connected(True)
        if self._sender is None:
            name = f"report-{self.device_id}"
            self._sender = self._loop.create_task(self._send_loop(), name=name)
        log.info("%s: connected to %s", self.device_id, self.credentials.hostname)

    async def wait_connected(self, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self._connected.wait()
        except TimeoutError:
            raise CloudTimeout(f"{self.device_id}: not connected within {within:g}s") from None

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Best-effort flush of pending reported properties, then shut the client down."""
        if self._closed:
            return
        if flush_timeout > 0 and self.connected and not self._idle.is_set():
            with contextlib.suppress(CloudError):
                await self.flush(flush_timeout)
        self._closed = True
        tasks = [*self._tasks, *([self._sender] if self._sender else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._desired_queue.put_nowait(None)
        self._set_connected(False)
        if self._client is not None:
            try:
                async with asyncio.timeout(self.options.call_timeout_s):
                    await self._client.shutdown()
            except Exception as exc:  # shutdown failing must not stop the caller's cleanup
                log.warning("%s: SDK shutdown failed: %s", self.device_id, type(exc).__name__)
        if self._pending:
            log.warning(
                "%s: closed with %d reported patch(es) unsent", self.device_id, len(self._pending)
            )

    def _make_client(self) -> Any:
        from azure.iot.device.aio import IoTHubDeviceClient

        creds = self.credentials
        options: dict[str, Any] = {
            "keep_alive": self.options.keep_alive_s,
            "connection_retry_interval": self.options.retry_interval_s,
            "ensure_desired_properties": False,  # we re-read the twin ourselves; see module doc
        }
        if creds.ca_pem is not None:
            options["server_verification_cert"] = creds.ca_pem
        if self.options.product_info:
            options["product_info"] = self.options.product_info
        try:
            if creds.connection_string is not None:
                client = IoTHubDeviceClient.create_from_connection_string(
                    creds.connection_string.reveal(), **options
                )
            else:
                assert creds.symmetric_key is not None
                if creds.gateway_hostname is not None:
                    options["gateway_hostname"] = creds.gateway_hostname
                client = IoTHubDeviceClient.create_from_symmetric_key(
                    symmetric_key=creds.symmetric_key.reveal(),
                    hostname=creds.hostname,
                    device_id=creds.device_id,
                    **options,
                )
        except (ValueError, TypeError) as exc:
            # The SDK's message may quote the credential, so it is not repeated.
            raise CloudError(
                f"{self.device_id}: unusable credentials ({type(exc).__name__})"
            ) from None
        # Coroutine handlers: they run on the SDK's one shared handler thread.
        # The SDK annotates this handler as taking None but calls it with no argument.
        client.on_connection_state_change = self._sdk_state_changed  # type: ignore[assignment]
        client.on_background_exception = self._sdk_background_exception
        return client

    def _install_receive_handlers(self, client: Any) -> None:
        client.on_twin_desired_properties_patch_received = self._sdk_desired_patch
        client.on_method_request_received = self._sdk_method_request

    # ------------------------------------------------------------ SDK thread -> our loop

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # our loop already closed: nothing to tell
            loop.call_soon_threadsafe(fn, *args)

    async def _sdk_state_changed(self) -> None:
        self._hand_over(self._on_state_changed)

    async def _sdk_desired_patch(self, patch: JsonObject) -> None:
        self._hand_over(self._on_desired_patch, patch)

    async def _sdk_method_request(self, request: Any) -> None:
        self._hand_over(self._on_method_request, request)

    async def _sdk_background_exception(self, exc: Exception) -> None:
        # Only the type: SDK messages can carry hostnames and tokens.
        log.debug("%s: SDK background exception %s", self.device_id, type(exc).__name__)

    # ------------------------------------------------------------ connection state

    def _set_connected(self, connected: bool) -> None:
        if connected:
            self._connected.set()
            self._wake.set()
        else:
            self._connected.clear()

    def _on_state_changed(self) -> None:
        if self._closed or self._client is None:
            return
        if self._client.connected:
            was = self.connected
            self._set_connected(True)
            if self._need_catch_up:
                self._need_catch_up = False
                self.reconnects += 1
                log.info("%s: reconnected", self.device_id)
                self._spawn(self._after_reconnect(), "resubscribe")
            elif not was:
                self._wake.set()
        else:
            if self.connected:
                log.warning("%s: connection lost; the SDK is reconnecting", self.device_id)
            self._need_catch_up = True
            self._set_connected(False)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=f"{what}-{self.device_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ desired

    async def get_twin(self) -> JsonObject:
        """The whole twin, ``{"desired": {...}, "reported": {...}}``, with bounded wait."""
        twin = await self._get_twin()
        desired = twin.get("desired", {})
        version = desired.get("$version", 0)
        if version >= self._desired_version:
            self._desired = mergepatch.strip_meta(desired)
            self._desired_version = version
        self._exposed_version = max(self._exposed_version, version)
        return twin

    @property
    def desired(self) -> JsonObject:
        """The desired document as last read or patched, with its ``$version``."""
        return {**copy.deepcopy(self._desired), "$version": self._desired_version}

    async def desired_patches(self) -> AsyncIterator[JsonObject]:
        """Desired merge patches with increasing ``$version``; ends when the link closes."""
        while True:
            patch = await self._desired_queue.get()
            if patch is None:
                return
            version = patch["$version"]
            if version <= self._exposed_version:
                continue  # already covered by get_twin() or an earlier patch
            self._exposed_version = version
            yield patch

    async def _get_twin(self) -> JsonObject:
        self._require_client()
        async with self._sdk_call("twin GET", self.options.call_timeout_s):
            twin: JsonObject = await self._client.get_twin()
        return twin

    def _on_desired_patch(self, patch: JsonObject) -> None:
        version = patch.get("$version")
        if not isinstance(version, int) or version <= self._desired_version:
            return  # stale, duplicate, or the SDK's version-only catch-up
        if self._desired_version and version == self._desired_version + 1:
            self._desired = mergepatch.apply(self._desired, mergepatch.strip_meta(patch))
            self._desired_version = version
            self._desired_queue.put_nowait(copy.deepcopy(patch))
        else:
            # A gap (or nothing read yet): the patch alone would be wrong; re-read instead.
            self._spawn(self._catch_up(), "catch-up")

    async def _after_reconnect(self) -> None:
        """Subscribe again (the hub may have lost the session), then re-read the twin."""
        delays = _BACKOFF.counter()
        while not self._closed:
            try:
                await self._resubscribe()
                break
            except CloudError as exc:
                log.info("%s: re-subscribing failed (%s); retrying", self.device_id, exc)
                await self._wait_reconnect(delays.next())
        self.resubscribes += 1
        await self._catch_up()

    async def _resubscribe(self) -> None:
        # No public SDK call re-sends SUBSCRIBE for an enabled feature; the pipeline's
        # enable_feature does (it does not check whether the feature is on already).
        self._require_client()
        pipeline = self._client._mqtt_pipeline
        assert self._loop is not None
        loop = self._loop
        for feature in _FEATURES:
            if feature == "twin" and not pipeline.feature_enabled.get(feature):
                continue  # never used yet: the SDK subscribes on first use
            done: asyncio.Future[BaseException | None] = loop.create_future()

            def finished(
                error: BaseException | None = None,
                done: asyncio.Future[BaseException | None] = done,
            ) -> None:
                def settle() -> None:
                    if not done.done():
                        done.set_result(error)

                with contextlib.suppress(RuntimeError):  # our loop already closed
                    loop.call_soon_threadsafe(settle)

            async with self._sdk_call(f"subscribe {feature}", self.options.call_timeout_s):
                pipeline.enable_feature(feature, callback=finished)
                error = await done
            if error is not None:  # a pipeline exception: only its type is safe to log
                raise CloudError(
                    f"{self.device_id}: subscribe {feature} failed ({type(error).__name__})"
                )

    async def _catch_up(self) -> None:
        """Re-read the twin and queue the difference to what the caller has seen."""
        delays = _BACKOFF.counter()
        while not self._closed:
            try:
                twin = await self._get_twin()
            except CloudError as exc:
                log.info("%s: twin re-read failed (%s); retrying", self.device_id, exc)
                await self._wait_reconnect(delays.next())
                continue
            desired = twin.get("desired", {})
            version = desired.get("$version", 0)
            if version > self._desired_version:
                patch = mergepatch.diff(self._desired, desired)
                patch["$version"] = version
                self._desired = mergepatch.strip_meta(desired)
                self._desired_version = version
                self._desired_queue.put_nowait(patch)
            return

    # ------------------------------------------------------------ reported

    async def report(self, patch: JsonObject, *, urgent: bool = False) -> None:
        """Merge ``patch`` into what will be sent; returns without waiting for the hub.

        ``urgent`` (a status transition) sends at once instead of after the rate
        limit, but still does not wait: while the hub is unreachable the patch
        waits here, merged with later ones, and the caller goes on with its work.
        """
        self._require_open()
        self._pending.add(patch, transition=urgent)
        self._idle.clear()
        self._wake.set()

    async def report_now(self, patch: JsonObject) -> None:
        """Merge and send now, skipping the rate limit; raises CloudTimeout if not acked."""
        await self.report(patch)
        self._urgent = True
        self._wake.set()
        await self.flush(self.options.call_timeout_s)

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 - the agreed interface
        """Wait until every reported patch so far is acknowledged by the hub."""
        self._require_open()
        self._urgent = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise CloudTimeout(
                f"{self.device_id}: reported properties not acknowledged within {timeout:g}s "
                "(kept; they are sent after the reconnect)"
            ) from None

    async def _send_loop(self) -> None:
        delays = _BACKOFF.counter()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                if not self._in_flight:
                    self._idle.set()
                continue
            await self._rate_limit()
            await self._connected.wait()
            patch = self._take()
            self._urgent = False
            if await self._send(patch):
                delays.reset()
            else:
                self._put_back(patch)
                await self._wait_reconnect(delays.next())
            self._wake.set()  # re-check: more may have been merged meanwhile

    async def _rate_limit(self) -> None:
        assert self._loop is not None
        while not (self._urgent or self._pending.has_transition):
            delay = self._last_send + self.options.report_interval_s - self._loop.time()
            if delay <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _take(self) -> JsonObject:
        self._in_flight = True
        return self._pending.take()

    def _put_back(self, patch: JsonObject) -> None:
        self._pending.put_back(patch)

    async def _send(self, patch: JsonObject) -> bool:
        """One PATCH; True when done with it (sent, or refused for good)."""
        from azure.iot.device import exceptions as sdk

        assert self._loop is not None
        self._last_send = self._loop.time()
        try:
            async with self._sdk_call("reported PATCH", self.options.call_timeout_s):
                await self._client.patch_twin_reported_properties(patch)
        except CloudError as exc:
            if _refused_by_hub(exc, sdk.ServiceError):
                log.error("%s: hub refused a reported patch, dropping it: %s", self.device_id, exc)
                return True
            log.warning("%s: reported PATCH failed (%s); will resend", self.device_id, exc)
            return False
        finally:
            self._in_flight = False
        self.sent_patches += 1
        return True

    async def _wait_reconnect(self, delay: float) -> None:
        """Back off for ``delay`` s, or less if the connection comes back meanwhile."""
        if self.connected:
            await asyncio.sleep(delay)  # a backoff, not a wait for a state
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._connected.wait()

    # ------------------------------------------------------------ methods

    def on_method(self, name: str, handler: MethodHandler) -> None:
        """Answer direct method ``name`` with ``handler(payload) -> (status, payload)``."""
        self._methods[name] = handler

    def _on_method_request(self, request: Any) -> None:
        if not self._closed:
            self._spawn(self._answer(request), f"method-{request.name}")

    async def _answer(self, request: Any) -> None:
        from azure.iot.device import MethodResponse

        status, payload = await self._run_handler(request.name, request.payload)
        response = MethodResponse.create_from_method_request(request, status, payload)
        try:
            async with self._sdk_call(
                f"method {request.name} response", self.options.call_timeout_s
            ):
                await self._client.send_method_response(response)
        except CloudError as exc:
            log.warning("%s: %s", self.device_id, exc)

    async def _run_handler(self, name: str, payload: Any) -> tuple[int, Any]:
        handler = self._methods.get(name)
        if handler is None:
            return 404, {"error": f"unknown method {name!r:.64}"}
        try:
            async with asyncio.timeout(self.options.method_timeout_s):
                return await handler(payload)
        except TimeoutError:
            log.warning("%s: method %s timed out", self.device_id, name)
            limit = self.options.method_timeout_s
            return 504, {"error": f"{name} did not finish within {limit:g}s"}
        except Exception as exc:  # a handler bug must answer, not kill the link
            log.exception("%s: method %s failed", self.device_id, name)
            return 500, {"error": f"{type(exc).__name__}: {exc}"[:512]}

    # ------------------------------------------------------------ SDK boundary

    def _require_open(self) -> None:
        if self._closed:
            raise CloudDisconnected(f"{self.device_id}: link is closed")

    def _require_client(self) -> None:
        self._require_open()
        if self._client is None:
            raise CloudDisconnected(f"{self.device_id}: not connected yet")

    @contextlib.asynccontextmanager
    async def _sdk_call(self, what: str, seconds: float) -> AsyncIterator[None]:
        """Bound an SDK call and translate its exceptions into ours."""
        from azure.iot.device import exceptions as sdk

        where = f"{self.device_id}: {what}"
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            raise CloudTimeout(f"{where}: no answer within {seconds:g}s") from None
        except sdk.CredentialError as exc:
            raise CloudAuthError(f"{where}: credentials refused") from exc
        except sdk.NoConnectionError as exc:
            raise CloudDisconnected(f"{where}: not connected") from exc
        except (
            sdk.ClientError,
            sdk.ServiceError,
            sdk.OperationTimeout,
            sdk.OperationCancelled,
        ) as exc:
            raise CloudError(f"{where}: {type(exc).__name__}") from exc

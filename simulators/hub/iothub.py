"""The IoT Hub itself: registry, twins, sessions, methods and telemetry.

It is transport-agnostic: the MQTT broker hands it authenticated devices and
their PUBLISHes through a :class:`Link`, and the REST API calls its service
operations. Everything runs on the emulator's one event loop, so no locks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

from simulators.hub import authorization, sas, topics
from simulators.hub.errors import AuthError, BadRequest, Conflict, NotFound, RequestError
from simulators.hub.mqtt import SUBACK_FAILURE, Publish, topic_matches
from simulators.hub.registry import Device, DeviceStatus
from simulators.hub.store import Store
from simulators.hub.twins import JsonObject, Twin, check_etag, loads_object

log = logging.getLogger(__name__)

TELEMETRY_KEPT = 1000  # per device; older messages are dropped


class Link(Protocol):
    """One client connection, as the hub sees it."""

    def send(self, packet: Publish) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TwinFault:
    """Injected misbehaviour of device-side twin responses.

    ``status`` answers every twin request with that error instead of the real
    result; ``delay`` holds each answer back. The hub never stays silent, since
    an unanswered twin request hangs the SDK forever.
    """

    delay: float = 0.0
    status: int | None = None


@dataclass(frozen=True)
class TelemetryMessage:
    device_id: str
    body: bytes
    properties: dict[str, str]
    received_at: float


@dataclass
class DeviceSession:
    """Per device id, outliving connections: MQTT ``clean_session=0`` state."""

    subscriptions: dict[str, int] = field(default_factory=dict)
    link: Link | None = None

    def subscribed(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self.subscriptions)


class IoTHub:
    def __init__(self, store: Store, hostname: str) -> None:
        self.hostname = hostname
        self._store = store
        self.devices: dict[str, Device] = {d.device_id: d for d in store.devices()}
        self.twins: dict[str, Twin] = {t.device_id: t for t in store.twins()}
        self.sessions: dict[str, DeviceSession] = {
            device_id: DeviceSession(subscriptions)
            for device_id, subscriptions in store.subscriptions().items()
            if device_id in self.devices
        }
        self.telemetry: dict[str, deque[TelemetryMessage]] = {}
        # Every accepted reported PATCH, in order: lets tests check status sequences.
        self.reported_log: dict[str, deque[JsonObject]] = {}
        self.twin_fault = TwinFault()
        #: The PnP model id each device announced at its last CONNECT ("modelId" in its
        #: twin); Device Update knows its devices by it (simulators/hub/adu/fleet.py).
        self.model_ids: dict[str, str] = {}
        # (device id, request id) -> the service's waiting call: a method response
        # counts only from the device the method was sent to.
        self._pending_methods: dict[tuple[str, str], asyncio.Future[tuple[int, Any]]] = {}
        self._rids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        # Called after every observable change, so waiters re-check their condition.
        self.on_change: Callable[[], None] = lambda: None

    # ------------------------------------------------------------ auth, sessions

    def authenticate(self, client_id: str, username: str | None, password: bytes | None) -> Device:
        """Check a CONNECT the way IoT Hub does; raises :class:`AuthError`."""
        device = self.devices.get(client_id)
        if device is None:
            raise AuthError("unknown device")
        if device.status is not DeviceStatus.ENABLED:
            raise AuthError("device disabled")
        if not username or not username.startswith(f"{self.hostname}/{client_id}/"):
            raise AuthError("username does not name this hub and device")
        token = sas.parse_token((password or b"").decode("utf-8", "replace"))
        if not sas.resource_matches(token, f"{self.hostname}/devices/{client_id}"):
            raise AuthError("token resource does not match the device")
        sas.verify(token, device.keys, time.time())
        model = parse_qs(username.partition("?")[2]).get("model-id")
        if model:
            self.model_ids[client_id] = model[0]
        else:
            self.model_ids.pop(client_id, None)
        return device

    def attach(self, device_id: str, link: Link) -> bool:
        """Make ``link`` the device's connection; returns whether a session existed."""
        existing = device_id in self.sessions
        session = self.sessions.setdefault(device_id, DeviceSession())
        old, session.link = session.link, link
        if old is not None:
            log.info("device %s connected again; closing its older connection", device_id)
            old.close()
        self.on_change()
        return existing

    def detach(self, device_id: str, link: Link) -> None:
        session = self.sessions.get(device_id)
        if session is not None and session.link is link:
            session.link = None
            self.on_change()

    def clean_session(self, device_id: str) -> None:
        """A CONNECT with ``clean_session=1``: forget the device's subscriptions."""
        self.sessions[device_id].subscriptions.clear()
        self._store.delete_subscriptions(device_id)

    def subscribe(self, device_id: str, topic_filter: str, qos: int) -> int:
        """The granted QoS, or SUBACK's failure code for a filter this identity may not use."""
        if not authorization.may_subscribe(device_id, topic_filter):
            log.warning("device %s may not subscribe to %.80r; refused", device_id, topic_filter)
            return SUBACK_FAILURE
        granted = min(qos, 1)
        self.sessions[device_id].subscriptions[topic_filter] = granted
        self._store.save_subscription(device_id, topic_filter, granted)
        self.on_change()
        return granted

    def unsubscribe(self, device_id: str, topic_filter: str) -> None:
        self.sessions[device_id].subscriptions.pop(topic_filter, None)
        self._store.delete_subscriptions(device_id, topic_filter)
        self.on_change()

    def is_connected(self, device_id: str) -> bool:
        session = self.sessions.get(device_id)
        return session is not None and session.link is not None

    def drop_all(self) -> int:
        """Fault injection: close every device connection; sessions persist."""
        links = [s.link for s in self.sessions.values() if s.link is not None]
        for link in links:
            link.close()
        return len(links)

    def drop_sessions(self) -> int:
        """Fault injection: forget every MQTT session, as a hub that lost its state would.

        Devices are disconnected too (a lost session cannot survive on a live
        connection); they reconnect to find ``session_present=0`` and nothing
        subscribed, so only a client that subscribes again hears anything.
        """
        links = [s.link for s in self.sessions.values() if s.link is not None]
        self.sessions.clear()
        self._store.delete_subscriptions()
        for link in links:
            link.close()
        self.on_change()
        return len(links)

    def _deliver(
        self, device_id: str, topic: str, body: JsonObject, *, force: bool = False
    ) -> bool:
        """Send to the device if connected and subscribed (``force`` skips the latter)."""
        session = self.sessions.get(device_id)
        if session is None or session.link is None:
            return False
        if not force and not session.subscribed(topic):
            return False
        session.link.send(Publish(topic, json.dumps(body).encode("utf-8")))
        return True

    # ------------------------------------------------------------ device PUBLISH

    async def on_publish(self, device_id: str, publish: Publish) -> None:
        parsed = topics.parse(publish.topic)
        if not authorization.may_publish(device_id, parsed):
            # IoT Hub closes the connection of a device that publishes where it may not.
            log.warning("device %s may not publish to %.80r; disconnected", device_id,
                        publish.topic)  # fmt: skip
            self._disconnect(device_id)
            return
        match parsed.kind:
            case topics.TopicKind.TWIN_GET | topics.TopicKind.TWIN_PATCH_REPORTED:
                self._spawn(self._twin_request(device_id, parsed, publish.payload))
            case topics.TopicKind.METHOD_RESPONSE:
                self._method_response(device_id, parsed, publish.payload)
            case topics.TopicKind.TELEMETRY:
                self._capture(device_id, parsed.params, publish.payload)

    def _disconnect(self, device_id: str) -> None:
        session = self.sessions.get(device_id)
        if session is not None and session.link is not None:
            session.link.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _twin_request(self, device_id: str, parsed: topics.ParsedTopic, body: bytes) -> None:
        rid = parsed.params.get("$rid", "")
        fault = self.twin_fault
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            # Twin responses go to the requester even before it subscribed to
            # $iothub/twin/res/#: the SDK sometimes asks first after a reconnect.
            self._deliver(device_id, topics.twin_response(fault.status, rid), {}, force=True)
            return
        try:
            if parsed.kind is topics.TopicKind.TWIN_GET:
                twin = self._twin(device_id)
                self._deliver(
                    device_id, topics.twin_response(200, rid), twin.device_view(), force=True
                )
                return
            patch = _json_object(body)
            twin = self._save_twin(self._twin(device_id).patch_reported(patch))
            log = self.reported_log.setdefault(device_id, deque(maxlen=TELEMETRY_KEPT))
            log.append(patch)
            self._deliver(
                device_id, topics.twin_response(204, rid, twin.reported_version), {}, force=True
            )
        except RequestError as exc:
            error = {"errorCode": int(exc.status) * 1000, "message": str(exc)}
            self._deliver(device_id, topics.twin_response(exc.status, rid), error, force=True)

    def _capture(self, device_id: str, props: dict[str, str], body: bytes) -> None:
        kept = self.telemetry.setdefault(device_id, deque(maxlen=TELEMETRY_KEPT))
        kept.append(TelemetryMessage(device_id, body, props, time.time()))
        self.on_change()

    def _method_response(self, device_id: str, parsed: topics.ParsedTopic, body: bytes) -> None:
        rid = parsed.params.get("$rid", "")
        future = self._pending_methods.pop((device_id, rid), None)
        if future is None or future.done():
            # A late answer after the service gave up, or an answer to a method
            # this device was never sent: only the addressed device may answer.
            log.info("device %s answered no method of its own (rid %.20r); dropped", device_id, rid)
            return
        try:
            payload = json.loads(body) if body else None
            status = int(parsed.segment)
        except ValueError:
            future.set_result((HTTPStatus.BAD_REQUEST, None))
            return
        future.set_result((status, payload))

    # ------------------------------------------------------------ registry

    def _twin(self, device_id: str) -> Twin:
        twin = self.twins.get(device_id)
        if twin is None:
            raise NotFound(f"device {device_id!r} not found")
        return twin

    def _save_twin(self, twin: Twin) -> Twin:
        self._store.save_twin(twin)
        self.twins[twin.device_id] = twin
        self.on_change()
        return twin

    def device(self, device_id: str) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise NotFound(f"device {device_id!r} not found")
        return device

    def put_device(self, device: Device, if_match: str | None = None) -> Device:
        """Create, or update with an etag; the twin comes into being with the device."""
        current = self.devices.get(device.device_id)
        if current is None:
            if if_match not in (None, "*"):
                raise NotFound(f"device {device.device_id!r} not found")
            stored = device
        else:
            if if_match is None:
                raise Conflict(f"device {device.device_id!r} already exists")
            check_etag(if_match, current.etag)
            stored = Device(
                device.device_id,
                device.primary_key,
                device.secondary_key,
                device.status,
                current.generation_id,
                current.version + 1,
            )
        self._store.save_device(stored)
        self.devices[stored.device_id] = stored
        if stored.device_id not in self.twins:
            self._save_twin(Twin(stored.device_id))
        session = self.sessions.get(stored.device_id)
        if stored.status is DeviceStatus.DISABLED and session and session.link:
            session.link.close()
        return stored

    def delete_device(self, device_id: str, if_match: str | None = None) -> None:
        check_etag(if_match, self.device(device_id).etag)
        self._store.delete_device(device_id)
        del self.devices[device_id]
        self.twins.pop(device_id, None)
        session = self.sessions.pop(device_id, None)
        if session is not None and session.link is not None:
            session.link.close()

    # ------------------------------------------------------------ service twins

    def get_twin(self, device_id: str) -> Twin:
        return self._twin(device_id)

    def update_twin(self, device_id: str, body: JsonObject, if_match: str | None) -> Twin:
        """Service PATCH: merge tags and desired; announce a desired change."""
        twin = self._twin(device_id)
        check_etag(if_match, twin.etag)
        tags, desired = _service_sections(body)
        if tags:
            twin = twin.patch_tags(tags)
        if desired:
            twin = twin.patch_desired(desired)
        self._save_twin(twin)
        if desired:
            self._announce_desired(twin, desired)
        return twin

    def replace_twin(self, device_id: str, body: JsonObject, if_match: str | None) -> Twin:
        twin = self._twin(device_id)
        check_etag(if_match, twin.etag)
        tags, desired = _service_sections(body)
        twin = self._save_twin(twin.replace_service_side(tags, desired))
        self._announce_desired(twin, twin.desired)
        return twin

    def _announce_desired(self, twin: Twin, patch: JsonObject) -> None:
        self._deliver(
            twin.device_id,
            topics.desired_patch(twin.desired_version),
            twin.desired_notification(patch),
        )

    # ------------------------------------------------------------ direct methods

    async def invoke_method(
        self, device_id: str, name: str, payload: Any, response_timeout: float
    ) -> tuple[int, Any]:
        self.device(device_id)
        rid = format(next(self._rids), "x")
        request_topic = topics.method_request(name, rid)
        session = self.sessions.get(device_id)
        if session is None or session.link is None or not session.subscribed(request_topic):
            raise RequestError(f"device {device_id!r} is not online", HTTPStatus.NOT_FOUND)
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._pending_methods[(device_id, rid)] = future
        self._deliver(device_id, request_topic, payload, force=True)
        try:
            async with asyncio.timeout(response_timeout):
                return await future
        except TimeoutError as exc:
            raise RequestError(
                f"device {device_id!r} did not answer {name!r} in {response_timeout}s",
                HTTPStatus.GATEWAY_TIMEOUT,
            ) from exc
        finally:
            self._pending_methods.pop((device_id, rid), None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for future in self._pending_methods.values():
            future.cancel()

    def twins_for_query(self) -> Iterable[Twin]:
        return self.twins.values()


def _json_object(body: bytes) -> JsonObject:
    return loads_object(body, "body")


def _service_sections(body: JsonObject) -> tuple[JsonObject, JsonObject]:
    tags = body.get("tags") or {}
    properties = body.get("properties") or {}
    desired = properties.get("desired") or {} if isinstance(properties, dict) else {}
    if not isinstance(tags, dict) or not isinstance(desired, dict):
        raise BadRequest("tags and properties.desired must be objects")
    return tags, desired

"""The Device Provisioning Service: symmetric-key enrollments that assign to the hub.

A registration answers 202 ``assigning`` with an operation id, and the first
status poll answers ``assigned``, which is the flow the SDK expects. The
device gets the key it registered with, so it can go on to the hub directly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from simulators.hub import sas, topics
from simulators.hub.errors import AuthError
from simulators.hub.iothub import IoTHub, Link
from simulators.hub.mqtt import Publish
from simulators.hub.registry import Device, Enrollment, EnrollmentKind
from simulators.hub.store import Store

log = logging.getLogger(__name__)

# Seconds the SDK waits before polling; 0 keeps tests fast, and the SDK accepts it.
RETRY_AFTER = 0


@dataclass(frozen=True)
class Registration:
    """A DPS client that passed authentication, with the key that signed it."""

    registration_id: str
    device_key: str


class Dps:
    def __init__(self, store: Store, hub: IoTHub, id_scope: str) -> None:
        self.id_scope = id_scope
        self._store = store
        self._hub = hub
        self.enrollments: dict[tuple[EnrollmentKind, str], Enrollment] = {
            (e.kind, e.name): e for e in store.enrollments()
        }
        self._operations: dict[str, dict[str, Any]] = {}

    def enroll(self, enrollment: Enrollment) -> Enrollment:
        self._store.save_enrollment(enrollment)
        self.enrollments[(enrollment.kind, enrollment.name)] = enrollment
        return enrollment

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None
    ) -> Registration:
        prefix = f"{self.id_scope}/registrations/{client_id}/"
        if not username or not username.startswith(prefix):
            raise AuthError("username does not name this scope and registration")
        token = sas.parse_token((password or b"").decode("utf-8", "replace"))
        if token.resource != f"{self.id_scope}/registrations/{client_id}":
            raise AuthError("token resource does not match the registration")
        now = time.time()
        individual = self.enrollments.get((EnrollmentKind.INDIVIDUAL, client_id))
        if individual is not None:
            sas.verify(token, individual.keys, now)
            return Registration(client_id, _signing_key(token, individual.keys, now))
        for enrollment in self.enrollments.values():
            if enrollment.kind is not EnrollmentKind.GROUP:
                continue
            derived = tuple(sas.derive_device_key(k, client_id) for k in enrollment.keys)
            try:
                sas.verify(token, derived, now)
            except AuthError:
                continue
            return Registration(client_id, _signing_key(token, derived, now))
        raise AuthError("no enrollment accepts this registration")

    def on_publish(self, reg: Registration, link: Link, publish: Publish) -> None:
        parsed = topics.parse(publish.topic)
        rid = parsed.params.get("$rid", "")
        if parsed.kind is topics.TopicKind.DPS_REGISTER:
            body, status = self._register(reg), 202
            link.send(_response(topics.dps_response(status, rid, RETRY_AFTER), body))
        elif parsed.kind is topics.TopicKind.DPS_STATUS:
            operation = self._operations.get(parsed.params.get("operationId", ""))
            if operation is None:
                error = {"errorCode": 404000, "message": "unknown operation"}
                link.send(_response(topics.dps_response(404, rid), error))
            else:
                link.send(_response(topics.dps_response(200, rid), operation))
        else:
            log.warning("DPS client published to an unsupported topic; dropped")

    def _register(self, reg: Registration) -> dict[str, Any]:
        device_id = reg.registration_id
        existing = self._hub.devices.get(device_id)
        if existing is None:
            self._hub.put_device(Device(device_id, reg.device_key, reg.device_key))
        elif reg.device_key not in existing.keys:
            # Re-provisioning with a new key updates the registry identity.
            self._hub.put_device(
                Device(device_id, reg.device_key, existing.secondary_key), if_match="*"
            )
        operation_id = f"4.{uuid.uuid4().hex[:16]}.{uuid.uuid4()}"
        now = dt.datetime.now(dt.UTC).isoformat()
        state = {
            "registrationId": reg.registration_id,
            "createdDateTimeUtc": now,
            "assignedHub": self._hub.hostname,
            "deviceId": device_id,
            "status": "assigned",
            "substatus": "initialAssignment",
            "lastUpdatedDateTimeUtc": now,
            "etag": uuid.uuid4().hex,
        }
        self._operations[operation_id] = {
            "operationId": operation_id,
            "status": "assigned",
            "registrationState": state,
        }
        return {"operationId": operation_id, "status": "assigning"}


def _signing_key(token: sas.SasToken, keys: tuple[str, ...], now: float) -> str:
    """Which of an enrollment's keys signed the token; the device uses that one."""
    for key in keys:
        try:
            sas.verify(token, (key,), now)
        except AuthError:
            continue
        return key
    raise AuthError("signature does not match any key")  # pragma: no cover


def _response(topic: str, body: dict[str, Any]) -> Publish:
    return Publish(topic, json.dumps(body).encode("utf-8"))

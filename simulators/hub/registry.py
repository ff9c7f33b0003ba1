"""Identity records: devices in the hub registry and DPS enrollments."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simulators.hub.sas import new_key
from simulators.hub.twins import make_etag


class DeviceStatus(StrEnum):
    """Registry status; a disabled device is refused at CONNECT."""

    ENABLED = "enabled"  # may connect
    DISABLED = "disabled"  # CONNACK 5


class EnrollmentKind(StrEnum):
    """How DPS finds the key that signed a registration."""

    INDIVIDUAL = "individual"  # one registration id, its own key
    GROUP = "group"  # any registration id, key derived from the group key


@dataclass(frozen=True)
class Device:
    device_id: str
    primary_key: str = field(default_factory=new_key, repr=False)
    secondary_key: str = field(default_factory=new_key, repr=False)
    status: DeviceStatus = DeviceStatus.ENABLED
    generation_id: str = field(default_factory=lambda: uuid.uuid4().hex[:18])
    version: int = 1

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.primary_key, self.secondary_key)

    @property
    def etag(self) -> str:
        return make_etag(self.version)

    def service_view(self, connected: bool) -> dict[str, Any]:
        """The JSON the registry REST API returns, shaped like IoT Hub's ``Device``."""
        return {
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": "Connected" if connected else "Disconnected",
            "status": self.status.value,
            "statusReason": None,
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "type": "sas",
                "symmetricKey": {
                    "primaryKey": self.primary_key,
                    "secondaryKey": self.secondary_key,
                },
                "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
            },
            "capabilities": {"iotEdge": False},
        }


@dataclass(frozen=True)
class Enrollment:
    """A DPS enrollment; ``name`` is the registration id or the group's name."""

    kind: EnrollmentKind
    name: str
    primary_key: str = field(default_factory=new_key, repr=False)
    secondary_key: str = field(default_factory=new_key, repr=False)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.primary_key, self.secondary_key)

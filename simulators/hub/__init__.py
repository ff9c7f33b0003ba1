"""Local IoT Hub + DPS emulator that the official Azure SDKs connect to unchanged.

Start it in-process with :class:`HubEmulator` (a background thread) or
:class:`HubServer` (inside your own event loop), or as ``mcu-gateway hub``.
"""

from __future__ import annotations

from simulators.hub.emulator import HubEmulator
from simulators.hub.errors import HubEmulatorError, StartupError
from simulators.hub.iothub import TelemetryMessage, TwinFault
from simulators.hub.registry import EnrollmentKind
from simulators.hub.server import HubFacts, HubServer

__all__ = [
    "EnrollmentKind",
    "HubEmulator",
    "HubEmulatorError",
    "HubFacts",
    "HubServer",
    "StartupError",
    "TelemetryMessage",
    "TwinFault",
]

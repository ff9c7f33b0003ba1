"""The reported twin schema: a superset of the IoT Hub firmware-update tutorial."""

from __future__ import annotations

import enum
import time
from typing import Any

from firmware.urls import redact_text
from gateway.codes import kind_of
from protocols.driver import DeviceFacts, Phase


class FwStatus(enum.StrEnum):
    """``fwUpdateStatus``: an update's :class:`~protocols.driver.Phase`, or how it ended."""

    CURRENT = "current"  # running the desired (or last installed) version
    DOWNLOADING = Phase.DOWNLOADING.value
    VERIFYING = Phase.VERIFYING.value  # package hash, signature, compatibility, version policy
    APPLYING = Phase.APPLYING.value  # writing the new image over the serial link
    REBOOTING = Phase.REBOOTING.value  # booting it; waiting for confirm or rollback
    ERROR = "error"
    ROLLEDBACK = "rolledback"

    @classmethod
    def of(cls, phase: Phase) -> FwStatus:
        return cls(phase.value)


#: Per-run figures of the last flash; stale as soon as another run starts or ends unseen.
RUN_FIGURES: dict[str, Any] = {
    "resumedFrom": None,
    "retransmits": None,
    "flashSeconds": None,
    "transferEncoding": None,  # "raw", "compressed" or "delta" (mcugw §17)
    "payloadBytes": None,  # image bytes as they went over the wire (the stream when encoded)
}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def utc_iso(timestamp: float) -> str:
    """A ``time.time()`` value in the twin's time format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def error_section(code: str, message: str, phase: str) -> dict[str, Any]:
    """The twin's ``error``: the code, its kind (what decides retry; ADU maps from it), where."""
    kind = kind_of(code)
    # Messages are bounded: a twin is capped at 32 KB and these come from outside input.
    return {
        "code": str(code),
        "kind": None if kind is None else kind.value,
        "message": redact_text(message)[:500],
        "phase": phase,
        "at": utc_now(),
    }


def redacted(value: Any) -> Any:
    """A reported patch with every URL in its strings redacted: the twin's last guard."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def slots_section(facts: DeviceFacts) -> list[dict[str, Any]]:
    return [
        {
            "index": s.index,
            "state": s.state.value,
            "version": s.version,
            "size": s.size,
            "sha256": s.sha256,
            "boot_count": s.boot_count,
        }
        for s in facts.slots
    ]


def mcu_section(
    facts: DeviceFacts, *, port: str, gateway_id: str, connected: bool
) -> dict[str, Any]:
    """The reported ``mcu`` section: who the MCU is and which promises hold for it."""
    return {
        "uid": facts.uid,
        "model": facts.model,
        "compat": facts.compat,
        "bootloader": facts.driver,
        "bootloaderVersion": facts.bootloader_version,
        "protocolVersion": facts.protocol_version,
        "safety": facts.safety.value,
        # An object, not a list, so fleet queries can test one: capabilities.rollback = true
        "capabilities": {c.value: True for c in sorted(facts.capabilities)},
        "capacity": facts.capacity,
        "serialPort": port,
        "gatewayDeviceId": gateway_id,
        "connected": connected,
        "slots": slots_section(facts),
    }

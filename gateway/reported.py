"""The reported twin schema: a superset of the IoT Hub firmware-update tutorial."""

from __future__ import annotations

import enum
import time
from typing import Any

from firmware.urls import redact_text
from protocols.packets import HelloResponse, InfoResponse


class FwStatus(enum.StrEnum):
    CURRENT = "current"  # running the desired (or last installed) version
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"  # package hash, signature, compatibility, version policy
    APPLYING = "applying"  # writing the inactive slot over the serial link
    REBOOTING = "rebooting"  # trial boot; waiting for confirm or rollback
    ERROR = "error"
    ROLLEDBACK = "rolledback"


#: Per-run figures of the last flash; stale as soon as another run starts or ends unseen.
RUN_FIGURES: dict[str, Any] = {"resumedFrom": None, "retransmits": None, "flashSeconds": None}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def utc_iso(timestamp: float) -> str:
    """A ``time.time()`` value in the twin's time format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def error_section(code: str, message: str, phase: str) -> dict[str, Any]:
    # Messages are bounded: a twin is capped at 32 KB and these come from outside input.
    return {"code": code, "message": redact_text(message)[:500], "phase": phase, "at": utc_now()}


def redacted(value: Any) -> Any:
    """A reported patch with every URL in its strings redacted: the twin's last guard."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def slots_section(info: InfoResponse) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "state": s.state.name.lower(),
            "version": s.version,
            "size": s.size,
            "sha256": s.sha256.hex(),
            "boot_count": s.boot_count,
        }
        for i, s in enumerate(info.slots)
    ]


def installed_version(info: InfoResponse) -> str | None:
    """The version the MCU runs, or would boot, judged from INFO."""
    if info.running_slot < len(info.slots):
        return info.slots[info.running_slot].version or None
    confirmed = [s for s in info.slots if s.state.name == "CONFIRMED"]
    return confirmed[-1].version if confirmed else None


def mcu_section(
    hello: HelloResponse, info: InfoResponse, *, port: str, gateway_id: str, connected: bool
) -> dict[str, Any]:
    return {
        "uid": info.uid.hex(),
        "model": info.model,
        "compat": info.compat,
        "bootloaderVersion": info.bootloader_version,
        "protocolVersion": hello.protocol_version,
        "serialPort": port,
        "gatewayDeviceId": gateway_id,
        "connected": connected,
        "slots": slots_section(info),
    }

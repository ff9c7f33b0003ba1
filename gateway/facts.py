"""Device facts as plain data: the one rendering `info --json`, `reset`/`abort` and the
``getInfo`` direct method share, so the CLI and the service never disagree on a key.
"""

from __future__ import annotations

from typing import Any

from protocols.driver import DeviceFacts, SlotFacts


def slot_dict(s: SlotFacts) -> dict[str, Any]:
    return {
        "index": s.index,
        "state": s.state.value,
        "version": s.version,
        "size": s.size,
        "sha256": s.sha256,
        "boot_count": s.boot_count,
    }


def facts_dict(f: DeviceFacts) -> dict[str, Any]:
    """The same keys for every driver; protocol specifics sit under ``details``."""
    running = next((s for s in f.slots if s.running), None)
    return {
        "driver": f.driver,
        "uid": f.uid,
        "model": f.model,
        "compat": f.compat,
        "bootloader_version": f.bootloader_version,
        "protocol_version": f.protocol_version,
        "mode": "bootloader" if f.in_bootloader else "app",
        "installed_version": f.installed_version,
        "running_slot": None if running is None else running.index,
        "running_version": None if running is None else running.version,
        "safety": f.safety.value,
        "capabilities": sorted(c.value for c in f.capabilities),
        "capacity": f.capacity,
        "slots": [slot_dict(s) for s in f.slots],
        "details": dict(f.details),
    }

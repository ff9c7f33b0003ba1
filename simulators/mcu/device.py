"""Builds a virtual MCU from a state directory: identity file plus flash image."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.models import DEFAULT_MODEL, MODELS, McuModel
from simulators.mcu.options import SimOptions


class SimConfigError(ValueError):
    """The simulator was asked for something inconsistent (named in the message)."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    state_dir: Path
    model: str | None = None  # None: whatever the state dir holds, else the default
    uid: bytes | None = None
    app_version: str | None = "1.0.0"
    flash_scale: float = 1.0  # multiplies erase/program/hash times
    turnaround_ms: float | None = None


def scaled_model(model: McuModel, spec: DeviceSpec) -> McuModel:
    m = model
    if spec.flash_scale != 1.0:
        m = replace(
            m,
            erase_us=int(m.erase_us * spec.flash_scale),
            program_us=int(m.program_us * spec.flash_scale),
            hash_us_per_kib=int(m.hash_us_per_kib * spec.flash_scale),
        )
    if spec.turnaround_ms is not None:
        m = replace(m, turnaround_us=int(spec.turnaround_ms * 1000))
    return m


def open_device(spec: DeviceSpec, options: SimOptions, baud: int) -> McuCore:
    """Load (or create) the MCU persisted in ``spec.state_dir``; power it on at t=0."""
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    ident_path = spec.state_dir / "device.json"
    stored: dict[str, str] = {}
    if ident_path.exists():
        try:
            stored = json.loads(ident_path.read_text())
        except (OSError, ValueError) as exc:
            raise SimConfigError(f"{ident_path}: unreadable identity file: {exc}") from exc
    name = spec.model or stored.get("model") or DEFAULT_MODEL
    if name not in MODELS:
        raise SimConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if stored and stored.get("model") != name:
        raise SimConfigError(
            f"{spec.state_dir} holds a {stored.get('model')} MCU, not {name}; "
            "use another --state directory"
        )
    uid = spec.uid or (bytes.fromhex(stored["uid"]) if "uid" in stored else secrets.token_bytes(12))
    if stored and bytes.fromhex(stored["uid"]) != uid:
        raise SimConfigError(f"{spec.state_dir} holds MCU uid {stored['uid']}, not {uid.hex()}")
    if not stored:
        ident_path.write_text(json.dumps({"model": name, "uid": uid.hex()}) + "\n")
    model = scaled_model(MODELS[name], spec)
    flash = Flash(model, spec.state_dir / "flash.bin")
    core = McuCore(model, flash, uid, options, baud=baud)
    if spec.app_version:
        core.install_initial_app(spec.app_version)
    core.power_on(0.0)
    return core

"""A fleet of simulated MCU twins inside the hub emulator, for service-side benchmarks.

No gateway and no serial link: each seeded twin looks like an MCU's (a
reported ``mcu`` section) and a simulator on the emulator's own loop plays
its gateway, reporting ``downloading`` when the twin's desired firmware
changes and ``current`` (or ``error``) some model minutes later. Everything
the fleet tool does still goes through the official service SDK over HTTPS,
into the emulator's throttles, query lag and five-minute evaluations, all
sped up by one time scale.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from simulators.hub.throttling import Tier

#: Model seconds an MCU takes from a new desired version to reporting the result.
UPDATE_TIME = (60.0, 180.0)


def start_hub(state: Path, subnet: str, time_scale: float, tier: Tier = Tier.S1) -> Any:
    """The emulator on the first free ``subnet``N address."""
    from simulators.hub import HubEmulator, StartupError
    from simulators.hub.addresses import first_free

    def start(address: str) -> Any:
        hub = HubEmulator(state, address, time_scale=time_scale, tier=tier)
        hub.start()
        return hub

    try:
        return first_free((f"{subnet}{n}" for n in range(1, 40)), start)
    except StartupError as exc:
        raise SystemExit(str(exc)) from exc


def seed(hub: Any, models: dict[str, int], version: str = "1.0.0", gateways: int = 2) -> list[str]:
    """``models[m]`` MCU twins of each model, plus gateways' own twins; returns MCU ids."""
    from simulators.hub.registry import Device

    ids = [f"{m}-{i:05d}" for m, n in models.items() for i in range(n)]

    def apply(server: Any) -> None:
        for n in range(gateways):
            server.hub.put_device(Device(f"gw-{n}"))
            twin = server.hub.twins[f"gw-{n}"].patch_reported({"attachedCount": 1})
            server.hub.twins[f"gw-{n}"] = twin
        for device_id in ids:
            model = device_id.rsplit("-", 1)[0]
            server.hub.put_device(Device(device_id))
            reported = {
                "mcu": {"model": model, "gatewayDeviceId": "gw-0", "serialPort": "/dev/ttyX"},
                "firmware": {"fwUpdateStatus": "current", "currentFwVersion": version},
            }
            twin = server.hub.twins[device_id].patch_tags({"group": "bench"})
            server.hub.twins[device_id] = twin.patch_reported(reported)

    hub.call(apply, timeout=600)
    return ids


class Devices:
    """Plays every MCU's gateway: polls the twins and reports on model time."""

    def __init__(self, hub: Any, failing: Collection[str] = (), seed: int = 1) -> None:
        self._hub = hub
        self._failing = set(failing)
        self._rng = random.Random(seed)
        self._started: dict[str, tuple[str, float, float]] = {}  # id -> version, at, takes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-sim", daemon=True)
        self.updates = 0

    def __enter__(self) -> Devices:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        period = self._hub.timing.real(5.0)  # look every 5 model seconds
        while not self._stop.wait(period):
            self._hub.call(self._step, timeout=60)

    def _step(self, server: Any) -> None:
        now = server.timing.now()
        for device_id, twin in list(server.hub.twins.items()):
            want = (twin.desired.get("firmware") or {}).get("fwVersion")
            fw = twin.reported.get("firmware") or {}
            if not want or "mcu" not in twin.reported:
                continue
            failed = fw.get("pendingFwVersion") == want and fw.get("fwUpdateStatus") == "error"
            if fw.get("currentFwVersion") == want or failed:
                continue
            started = self._started.get(device_id)
            if started is None or started[0] != want:
                self._started[device_id] = (want, now, self._rng.uniform(*UPDATE_TIME))
                patch = {"fwUpdateStatus": "downloading", "pendingFwVersion": want, "progress": 0}
            elif now - started[1] < started[2]:
                continue
            elif device_id in self._failing:
                patch = {"fwUpdateStatus": "error", "error": {
                    "code": "HASH_MISMATCH", "phase": "verifying", "message": "image hash differs",
                    "at": _utc()}}  # fmt: skip
            else:
                patch = {"fwUpdateStatus": "current", "currentFwVersion": want,
                         "pendingFwVersion": None, "error": None}  # fmt: skip
                self.updates += 1
            server.hub.twins[device_id] = twin.patch_reported({"firmware": patch})


def _utc() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

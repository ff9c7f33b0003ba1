"""The fleet view: counts by model, version and status, and the MCUs that need a look.

Three queries, whatever the fleet's size: one ``GROUP BY`` for the counts and
two projections for the failed and in-progress MCUs. IoT Hub does the
counting, so ``fleet status`` stays fast over ten thousand twins.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.fleet.hub import FleetHub
from gateway.fleet.rollout import IN_PROGRESS

_FW = "properties.reported.firmware"
_MCU = "properties.reported.mcu"
NONE = "-"  # shown for a missing value (an MCU that has not reported yet)
# Aliases avoid the Twin model's own field names (version, status, ...): the
# service SDK pushes every query row through its Twin deserializer.
_GROUPED = {
    "model": f"{_MCU}.model",
    "fwVersion": f"{_FW}.currentFwVersion",
    "fwStatus": f"{_FW}.fwUpdateStatus",
    "ring": "tags.ring",
    "groupName": "tags.group",
}


@dataclass(frozen=True)
class Failure:
    device_id: str
    gateway: str
    port: str
    model: str
    status: str
    version: str
    code: str
    phase: str
    message: str
    at: str


@dataclass(frozen=True)
class InProgress:
    device_id: str
    gateway: str
    model: str
    status: str
    pending: str
    progress: int


@dataclass(frozen=True)
class FleetStatus:
    total: int
    by_model: dict[str, int]
    by_version: dict[str, int]
    by_status: dict[str, int]
    #: (ring or group name) -> status -> count; the chart's bars
    by_ring: dict[str, dict[str, int]]
    by_group: dict[str, dict[str, int]]
    versions_by_model: dict[str, dict[str, int]]
    failures: list[Failure] = field(default_factory=list)
    in_progress: list[InProgress] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _where(where: str | None, extra: str | None = None) -> str:
    parts = [f"({where})" for w in [where] if w and w.strip()]
    if extra:
        parts.append(extra)
    return f" WHERE {' AND '.join(parts)}" if parts else ""


def _text(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def _nested(rows: list[dict[str, Any]], outer: str, inner: str) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for row in rows:
        out.setdefault(_text(row.get(outer)), Counter())[_text(row.get(inner))] += row["n"]
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    counter: Counter[str] = Counter()
    for row in rows:
        counter[_text(row.get(key))] += row["n"]
    return dict(sorted(counter.items()))


def collect(hub: FleetHub, where: str | None = None, limit: int = 1000) -> FleetStatus:
    """Query IoT Hub for the fleet view; ``where`` narrows it (a query condition)."""
    select = ", ".join(f"{path} AS {name}" for name, path in _GROUPED.items())
    rows = hub.query(
        f"SELECT {select}, COUNT() AS n FROM devices{_where(where)} "
        f"GROUP BY {', '.join(_GROUPED.values())}"
    )
    failed = hub.query(
        f"SELECT deviceId, {_MCU}.gatewayDeviceId AS gateway, {_MCU}.serialPort AS port, "
        f"{_MCU}.model AS model, {_FW}.fwUpdateStatus AS fwStatus, "
        f"{_FW}.currentFwVersion AS fwVersion, {_FW}.error AS error FROM devices"
        + _where(where, f"{_FW}.fwUpdateStatus IN ['error', 'rolledback']")
    )
    statuses = ", ".join(f"'{s}'" for s in IN_PROGRESS)
    busy = hub.query(
        f"SELECT deviceId, {_MCU}.gatewayDeviceId AS gateway, {_MCU}.model AS model, "
        f"{_FW}.fwUpdateStatus AS fwStatus, {_FW}.pendingFwVersion AS pending, "
        f"{_FW}.progress AS progress FROM devices"
        + _where(where, f"{_FW}.fwUpdateStatus IN [{statuses}]")
    )
    return FleetStatus(
        total=sum(r["n"] for r in rows),
        by_model=_count(rows, "model"),
        by_version=_count(rows, "fwVersion"),
        by_status=_count(rows, "fwStatus"),
        by_ring=_nested(rows, "ring", "fwStatus"),
        by_group=_nested(rows, "groupName", "fwStatus"),
        versions_by_model=_nested(rows, "model", "fwVersion"),
        failures=sorted((_failure(r) for r in failed), key=lambda f: f.device_id)[:limit],
        in_progress=sorted((_busy(r) for r in busy), key=lambda b: b.device_id)[:limit],
    )


def _failure(row: dict[str, Any]) -> Failure:
    error = row.get("error") if isinstance(row.get("error"), dict) else {}
    assert isinstance(error, dict)
    return Failure(
        device_id=str(row.get("deviceId", "")),
        gateway=_text(row.get("gateway")),
        port=_text(row.get("port")),
        model=_text(row.get("model")),
        status=_text(row.get("fwStatus")),
        version=_text(row.get("fwVersion")),
        code=_text(error.get("code")),
        phase=_text(error.get("phase")),
        message=_text(error.get("message")),
        at=_text(error.get("at")),
    )


def _busy(row: dict[str, Any]) -> InProgress:
    progress = row.get("progress")
    return InProgress(
        device_id=str(row.get("deviceId", "")),
        gateway=_text(row.get("gateway")),
        model=_text(row.get("model")),
        status=_text(row.get("fwStatus")),
        pending=_text(row.get("pending")),
        progress=int(progress) if isinstance(progress, int | float) else 0,
    )

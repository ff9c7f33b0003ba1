"""The fleet view: counts by model, version and status, and the MCUs that need a look.

IoT Hub does the counting: ``GROUP BY`` queries of one attribute each (the
query language's documented grammar groups by one attribute), one more per
model, ring and group for the nested counts, and two ``TOP`` projections for
the failed and in-progress MCUs. Only MCU twins count: a gateway's own twin
reports no ``mcu`` section. ``tags.[[group]]`` is escaped: ``group`` is a
reserved word of the query language.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.fleet.hub import FleetHub, literal
from gateway.fleet.rollout import GROUP_PATH, IN_PROGRESS, MCU_CONDITION

_FW = "properties.reported.firmware"
_MCU = "properties.reported.mcu"
NONE = "-"  # shown for a missing value (an MCU that has not reported yet)
# Aliases avoid the Twin model's own field names (version, status, ...): the
# service SDK pushes every query row through its Twin deserializer.
_MODEL = f"{_MCU}.model"
_VERSION = f"{_FW}.currentFwVersion"
_STATUS = f"{_FW}.fwUpdateStatus"
_RING = "tags.ring"


@dataclass(frozen=True)
class Failure:
    device_id: str
    gateway: str
    port: str
    model: str
    status: str
    version: str
    target: str  # the version the MCU was asked for
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
    parts = [MCU_CONDITION] + [f"({w})" for w in [where] if w and w.strip()]
    if extra:
        parts.append(extra)
    return " AND ".join(parts)


def _text(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def _is(path: str, value: Any) -> str:
    """A condition selecting one GROUP BY bucket (a missing value is its own bucket)."""
    if value is None:
        return f"NOT IS_DEFINED({path})"
    if isinstance(value, str):
        return f"{path} = {literal(value)}"
    return f"{path} = {json.dumps(value)}"


def _grouped(hub: FleetHub, path: str, where: str) -> list[tuple[Any, int]]:
    rows = hub.query(f"SELECT {path} AS k, COUNT() AS n FROM devices WHERE {where} GROUP BY {path}")
    return [(row.get("k"), int(row.get("n", 0))) for row in rows]


def _count(pairs: list[tuple[Any, int]]) -> dict[str, int]:
    counter: Counter[str] = Counter()
    for value, n in pairs:
        counter[_text(value)] += n
    return dict(sorted(counter.items()))


def _nested(hub: FleetHub, outer: str, inner: str, where: str) -> dict[str, dict[str, int]]:
    """Counts of ``inner`` per value of ``outer``: one GROUP BY per outer value."""
    out: dict[str, dict[str, int]] = {}
    for value, _n in _grouped(hub, outer, where):
        counts = _count(_grouped(hub, inner, f"{where} AND {_is(outer, value)}"))
        merged = Counter(out.get(_text(value), {})) + Counter(counts)
        out[_text(value)] = dict(sorted(merged.items()))
    return dict(sorted(out.items()))


def collect(hub: FleetHub, where: str | None = None, limit: int = 1000) -> FleetStatus:
    """Query IoT Hub for the fleet view; ``where`` narrows it (a query condition)."""
    base = _where(where)
    by_status = _count(_grouped(hub, _STATUS, base))
    versions_by_model = _nested(hub, _MODEL, _VERSION, base)
    by_version: Counter[str] = Counter()
    for versions in versions_by_model.values():
        by_version.update(versions)
    failed = hub.query(
        f"SELECT TOP {limit} deviceId, {_MCU}.gatewayDeviceId AS gateway, "
        f"{_MCU}.serialPort AS port, {_MODEL} AS model, {_STATUS} AS fwStatus, "
        f"{_VERSION} AS fwVersion, properties.desired.firmware.fwVersion AS target, "
        f"{_FW}.error AS error FROM devices WHERE "
        + _where(where, f"{_STATUS} IN ['error', 'rolledback']")
    )
    statuses = ", ".join(f"'{s}'" for s in IN_PROGRESS)
    busy = hub.query(
        f"SELECT TOP {limit} deviceId, {_MCU}.gatewayDeviceId AS gateway, {_MODEL} AS model, "
        f"{_STATUS} AS fwStatus, {_FW}.pendingFwVersion AS pending, "
        f"{_FW}.progress AS progress FROM devices WHERE "
        + _where(where, f"{_STATUS} IN [{statuses}]")
    )
    return FleetStatus(
        total=sum(by_status.values()),
        by_model={m: sum(v.values()) for m, v in versions_by_model.items()},
        by_version=dict(sorted(by_version.items())),
        by_status=by_status,
        by_ring=_nested(hub, _RING, _STATUS, base),
        by_group=_nested(hub, GROUP_PATH, _STATUS, base),
        versions_by_model=versions_by_model,
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
        target=_text(row.get("target")),
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

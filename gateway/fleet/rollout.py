"""Phased rollouts as IoT Hub configurations: the plan, its state and the next step.

A rollout NAME is one configuration per started ring, ``NAME-r0``,
``NAME-r1``, ..., all with the same content (``properties.desired.firmware``)
and priority. Rings are cumulative: ring k targets ``(TARGET) AND <clause k>``
where clause k takes in rings 0..k, and the last ring targets TARGET alone,
so IoT Hub keeps updating MCUs that join the group later. Because the newest
of equal-priority configurations wins, the latest ring's metrics cover every
MCU reached so far, and that is what the failure threshold is judged on.

Everything :func:`decide` needs is in the configurations: the ring plan,
thresholds, schedule and state are labels of ``NAME-r0``, the whole target is
its ``groupTargeted`` metric query. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.fleet.errors import FleetError
from gateway.fleet.hub import Config, literal

FLEET_LABEL = "mcuFleet"  # marks configurations this module owns
RING_TAG = "ring"  # tags.ring names the ring in --rings mode
GROUP_TAG = "group"  # tags.group names the group ...
#: ... and is written tags.[[group]] in queries: GROUP is a reserved word of the
#: IoT Hub query language ("IoT Hub query language", learn.microsoft.com).
GROUP_PATH = f"tags.[[{GROUP_TAG}]]"
#: MCU twins, not gateways: only an MCU's twin reports an ``mcu`` section.
MCU_CONDITION = "IS_DEFINED(properties.reported.mcu)"
#: Twin paths a rollout itself changes. A target on them loses MCUs as they
#: update (the applied count falls as MCUs succeed), so it could never finish.
CHANGED_BY_ROLLOUT = (
    "properties.reported.firmware",
    "properties.reported.mcu.slots",
    "properties.desired",
    "configurations",
    "tags.fwRollouts",
    "tags.fwPins",
)
PERCENT_TAG = "fwRollouts"  # tags.fwRollouts.<key> = first ring index, in --percent mode
PIN_TAG = "fwPins"  # tags.fwPins.<key>.<label> = 1: a fixed set of MCUs (retry, rollback, cancel)
INLINE_IDS = 50  # up to this many MCUs a fixed set is a deviceId IN [...] list instead
DEFAULT_PRIORITY = 10
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
_WINDOW = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]")
_RING_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
ALL = "all"
_FW = "properties.reported.firmware"
IN_PROGRESS = ("downloading", "verifying", "applying", "rebooting")
#: Clock skew allowed between this machine and the gateways when telling a new
#: failure from an old one (errors carry the gateway's UTC time).
STALE_SKEW = dt.timedelta(minutes=2)


class State(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for --start; ring 0 targets nothing yet
    RUNNING = "running"  # rings are being started as the previous ones pass
    HALTED = "halted"  # a ring breached the failure threshold; no new ring
    DONE = "done"  # the last ring passed
    CANCELLED = "cancelled"  # stopped by the operator; reached MCUs keep the version
    ROLLEDBACK = "rolledback"  # the previous version was deployed to the reached MCUs


@dataclass(frozen=True)
class Package:
    version: str
    uri: str
    check_value: str
    size: int
    window: str | None = None  # "HH:MM-HH:MM", UTC
    allow_downgrade: bool = False

    def desired(self) -> dict[str, Any]:
        fw: dict[str, Any] = {
            "fwVersion": self.version,
            "fwPackageURI": self.uri,
            "fwPackageCheckValue": self.check_value.lower(),
            "fwPackageSize": self.size,
            "allowDowngrade": self.allow_downgrade,
            # Every key a rollout owns is written each time, null when unused, so a
            # hub that merges content into the twin keeps nothing from an earlier one.
            "installWindow": None,
            "retry": None,
        }
        if self.window:
            start, end = self.window.split("-")
            fw["installWindow"] = {"start": start, "end": end, "tz": "UTC"}
        return fw

    def validate(self) -> None:
        """Refuse values the gateway would refuse on every MCU."""
        if self.window and not _WINDOW.fullmatch(self.window):
            raise FleetError(f"--window {self.window!r}: expected HH:MM-HH:MM")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", self.check_value):
            raise FleetError("--check-value must be the package's SHA-256 as 64 hex digits")
        if self.size <= 0:
            raise FleetError("--size must be the package size in bytes, more than 0")
        if not self.uri.lower().startswith(("https://", "http://")):
            raise FleetError(f"--package-uri {self.uri[:80]!r}: not an http(s) URL")
        if not self.version.strip():
            raise FleetError("--version is empty")

    @classmethod
    def from_desired(cls, fw: Mapping[str, Any]) -> Package:
        window = fw.get("installWindow")
        uri = str(fw.get("fwPackageURI", ""))
        return cls(
            version=str(fw.get("fwVersion", "")),
            uri=uri.split("#", 1)[0],
            check_value=str(fw.get("fwPackageCheckValue", "")),
            size=int(fw.get("fwPackageSize") or 0),
            window=f"{window['start']}-{window['end']}" if isinstance(window, dict) else None,
            allow_downgrade=bool(fw.get("allowDowngrade", False)),
        )


@dataclass(frozen=True)
class Plan:
    """What ``fleet deploy`` was asked for; validated on construction."""

    name: str
    package: Package
    target: str
    rings: tuple[str, ...] = (ALL,)  # tag values of tags.ring, or "N%" in percent mode
    max_failure_rate: float = 0.05
    min_success: int | None = None
    start: str | None = None  # ISO-8601 UTC
    priority: int = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise FleetError(
                f"rollout name {self.name[:60]!r}: use 1-48 lower-case letters, digits and '-'"
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise FleetError(f"--max-failure-rate {self.max_failure_rate}: must be within 0-1")
        if self.min_success is not None and self.min_success < 0:
            raise FleetError("--min-success must not be negative")
        if not self.target.strip():
            raise FleetError(f"--target is empty: give a condition such as \"{GROUP_PATH} = 'a'\"")
        if (changed := changed_path(self.target)) is not None:
            raise FleetError(
                f"--target depends on {changed}, which the rollout itself changes: MCUs would "
                "leave the target as they update and it could never finish; target tags or "
                "properties.reported.mcu.model instead"
            )
        if not self.rings:
            raise FleetError("no rings given")
        self.package.validate()
        if not math.isfinite(self.max_failure_rate):
            raise FleetError("--max-failure-rate must be a number within 0-1")
        if self.percent_mode:
            values = [self.percent(k) for k in range(len(self.rings))]
            if values != sorted(values) or values[-1] != 100 or values[0] <= 0:
                raise FleetError("--percent must rise and end at 100, e.g. 1,10,100")
        else:
            for ring in self.rings:
                if not _RING_NAME.fullmatch(ring):
                    raise FleetError(f"ring name {ring[:40]!r}: letters, digits, '-' and '_'")
            if len(set(self.rings)) != len(self.rings):
                raise FleetError("--rings names a ring twice")

    @property
    def percent_mode(self) -> bool:
        return all(r.endswith("%") for r in self.rings)

    def percent(self, k: int) -> float:
        try:
            value = float(self.rings[k].rstrip("%"))
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise FleetError(f"--percent value {self.rings[k].rstrip('%')!r} is not a number")
        return value

    @property
    def tag_key(self) -> str:
        """This rollout's key under tags.fwRollouts (query paths cannot hold '-')."""
        return "r_" + self.name.replace("-", "_")

    def clause(self, k: int) -> str | None:
        """Ring k's condition on top of the target; None for a ring that is the target."""
        last = k == len(self.rings) - 1
        if self.percent_mode:
            return None if last else f"tags.{PERCENT_TAG}.{self.tag_key} <= {k}"
        if self.rings[k] == ALL:
            return None
        names = [r for r in self.rings[: k + 1] if r != ALL]
        return f"tags.{RING_TAG} IN [{', '.join(literal(n) for n in names)}]"

    def condition(self, k: int) -> str:
        """Ring k's target condition: MCU twins only, so a gateway's own twin that
        matches the target is never given firmware nor counted in the metrics."""
        clause = self.clause(k)
        parts = [f"({self.target})", MCU_CONDITION, *([clause] if clause else [])]
        return " AND ".join(parts)

    def ring_check(self, k: int) -> str:
        """A query counting ring k's MCUs before it starts (unknown groups show up here)."""
        return f"SELECT COUNT() AS n FROM devices WHERE {self.condition(k)}"

    def config(
        self, k: int, now: dt.datetime, state: State | None = None, reason: str = ""
    ) -> Config:
        cid = ring_id(self.name, k)
        labels = {
            FLEET_LABEL: "ring", "rollout": self.name, "ring": self.rings[k],
            "ringIndex": str(k), "version": self.package.version,
        }  # fmt: skip
        if k == 0:
            labels |= {
                "rings": ",".join(self.rings),
                "maxFailureRate": repr(self.max_failure_rate),
                "minSuccess": "" if self.min_success is None else str(self.min_success),
                "start": self.start or "",
                "state": (state or State.RUNNING).value,
                "reason": reason[:120],
            }
        scheduled = state is State.SCHEDULED
        return Config(
            id=cid,
            content={"properties.desired.firmware": self.package.desired()},
            target_condition="" if scheduled else self.condition(k),
            priority=self.priority,
            labels=labels,
            metric_queries={
                **ring_metrics(cid, self.package.version, since(now)),
                "groupTargeted": target_query(self.target),
            },
        )

    def percent_members(self, device_ids: Sequence[str], k: int) -> list[str]:
        """The devices of percent ring k (cumulative), chosen by a stable hash."""
        ordered = sorted(
            device_ids, key=lambda d: hashlib.sha256(f"{self.name}/{d}".encode()).digest()
        )
        n = max(1, math.ceil(len(ordered) * self.percent(k) / 100)) if ordered else 0
        return ordered[:n]


def changed_path(condition: str) -> str | None:
    """The first path in ``condition`` that a rollout changes, or None."""
    bare = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", condition)
    for path in CHANGED_BY_ROLLOUT:
        if re.search(rf"(?<![\w.\]]){re.escape(path)}(?![\w\[])", bare, re.IGNORECASE):
            return path
    return None


def ring_id(name: str, k: int) -> str:
    return f"{name}-r{k}"


def target_query(target: str) -> str:
    return f"SELECT deviceId FROM devices WHERE {target}"


def since(now: dt.datetime) -> str:
    """The oldest error time a new configuration counts, in the twin's time format."""
    return (now - STALE_SKEW).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ring_metrics(config_id: str, version: str, after: str) -> dict[str, str]:
    """Custom metric queries for one configuration, selecting on its Applied MCUs.

    Failures count only with an ``error.at`` from ``after`` on: an MCU still
    showing an earlier attempt's error (its gateway waits for an install
    window, say) is not a failure of this configuration.
    """
    applied = f"configurations.[[{config_id}]].status = 'Applied'"
    fresh = f"{_FW}.error.at >= {literal(after)}"
    statuses = ", ".join(f"'{s}'" for s in IN_PROGRESS)
    base = f"SELECT deviceId FROM devices WHERE {applied} AND {_FW}"
    return {
        "current": f"{base}.fwUpdateStatus = 'current' AND "
        f"{_FW}.currentFwVersion = {literal(version)}",
        "inProgress": f"{base}.fwUpdateStatus IN [{statuses}]",
        "failed": f"{base}.fwUpdateStatus = 'error' AND {fresh}",
        "rolledBack": f"{base}.fwUpdateStatus = 'rolledback' AND {fresh}",
    }


@dataclass(frozen=True)
class RingStatus:
    index: int
    name: str
    config_id: str
    targeted: int = 0
    applied: int = 0
    current: int = 0
    in_progress: int = 0
    failed: int = 0
    rolled_back: int = 0

    @property
    def failures(self) -> int:
        return self.failed + self.rolled_back

    @classmethod
    def from_config(cls, index: int, name: str, config: Config) -> RingStatus:
        m, s = config.metrics, config.system_metrics
        return cls(
            index, name, config.id, s.get("targetedCount", 0), s.get("appliedCount", 0),
            m.get("current", 0), m.get("inProgress", 0), m.get("failed", 0),
            m.get("rolledBack", 0),
        )  # fmt: skip


@dataclass(frozen=True)
class Rollout:
    """A rollout as read back from IoT Hub."""

    plan: Plan
    state: State
    reason: str
    rings: tuple[RingStatus, ...]  # the started rings, in order
    configs: tuple[Config, ...]
    extra: tuple[Config, ...] = ()  # retry and rollback configurations
    created: str = ""

    @property
    def first(self) -> Config:
        return self.configs[0]

    @property
    def current_ring(self) -> RingStatus | None:
        return self.rings[-1] if self.rings else None

    def reached_condition(self) -> str:
        """MCUs any configuration of this rollout was applied to."""
        ids = [c.id for c in (*self.configs, *self.extra)]
        return " OR ".join(f"configurations.[[{i}]].status = 'Applied'" for i in ids)


def load(name: str, configs: Sequence[Config]) -> Rollout | None:
    """Rebuild a rollout from the hub's configurations, or None if there is none."""
    mine = [c for c in configs if c.labels.get("rollout") == name and FLEET_LABEL in c.labels]
    rings = sorted(
        (c for c in mine if c.labels[FLEET_LABEL] == "ring"),
        key=lambda c: int(c.labels.get("ringIndex", "0")),
    )
    if not rings or rings[0].labels.get("ringIndex") != "0":
        return None
    first = rings[0]
    labels = first.labels
    fw = first.content.get("properties.desired.firmware")
    target = first.metric_queries.get("groupTargeted", "")
    prefix = "SELECT deviceId FROM devices WHERE "
    try:
        plan = Plan(
            name=name,
            package=Package.from_desired(fw if isinstance(fw, dict) else {}),
            target=target[len(prefix) :] if target.startswith(prefix) else target,
            rings=tuple(labels.get("rings", ALL).split(",")),
            max_failure_rate=float(labels.get("maxFailureRate", "0.05")),
            min_success=int(labels["minSuccess"]) if labels.get("minSuccess") else None,
            start=labels.get("start") or None,
            priority=first.priority,
        )
        state = State(labels.get("state", State.RUNNING.value))
    except (FleetError, ValueError, KeyError) as exc:
        raise FleetError(f"rollout {name}: its configurations are damaged: {exc}") from None
    statuses = tuple(
        RingStatus.from_config(int(c.labels["ringIndex"]), c.labels.get("ring", "?"), c)
        for c in rings
    )
    extra = tuple(c for c in mine if c.labels[FLEET_LABEL] != "ring")
    return Rollout(plan, state, labels.get("reason", ""), statuses, tuple(rings), extra,
                   first.created)  # fmt: skip


def rollout_names(configs: Sequence[Config]) -> list[str]:
    """Rollout names, oldest first."""
    firsts = [c for c in configs if c.labels.get(FLEET_LABEL) == "ring"
              and c.labels.get("ringIndex") == "0" and "rollout" in c.labels]  # fmt: skip
    return [c.labels["rollout"] for c in sorted(firsts, key=lambda c: c.created)]


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class Activate:
    """The scheduled start has come: give ring 0 its target condition."""


@dataclass(frozen=True)
class StartRing:
    index: int
    reason: str


@dataclass(frozen=True)
class Halt:
    reason: str


@dataclass(frozen=True)
class Finish:
    reason: str


Decision = Wait | Activate | StartRing | Halt | Finish


def needed_successes(plan: Plan, ring: RingStatus) -> int:
    """Successes a ring needs before the next starts.

    ``--min-success N`` (capped at the ring's size); otherwise every MCU of the
    ring except the failures the threshold allows, so a ring is not passed while
    most of it is still updating.
    """
    size = ring.applied
    if plan.min_success is not None:
        return min(plan.min_success, size)
    return size - math.floor(plan.max_failure_rate * size)


def decide(rollout: Rollout, now: dt.datetime) -> Decision:
    """The next step of a rollout, from its state and its rings' metrics."""
    plan = rollout.plan
    if rollout.state is State.SCHEDULED:
        start = parse_time(plan.start) if plan.start else now
        if now < start:
            return Wait(f"scheduled to start at {plan.start}")
        return Activate()
    if rollout.state is not State.RUNNING:
        return Wait(
            f"rollout is {rollout.state.value}" + (f": {rollout.reason}" * bool(rollout.reason))
        )
    ring = rollout.current_ring
    assert ring is not None
    label = f"ring {ring.index + 1} ({ring.name})"  # operators count rings from 1
    if ring.applied == 0:
        return Wait(f"{label}: IoT Hub has not applied it to any MCU yet")
    allowed = plan.max_failure_rate * ring.applied
    if ring.failures > allowed:
        return Halt(
            f"{label}: {ring.failures} of {ring.applied} MCUs failed "
            f"({ring.failures / ring.applied:.0%} > {plan.max_failure_rate:.0%} allowed)"
        )
    needed = needed_successes(plan, ring)
    if ring.current < needed:
        return Wait(f"{label}: {ring.current} of {needed} needed successes, "
                    f"{ring.in_progress} in progress, {ring.failures} failed")  # fmt: skip
    if ring.index + 1 >= len(plan.rings):
        return Finish(f"{label}: {ring.current} of {ring.applied} MCUs current")
    return StartRing(ring.index + 1, f"{label} passed: {ring.current} of {ring.applied} current")


def parse_time(text: str) -> dt.datetime:
    """ISO-8601; a time without a zone is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FleetError(
            f"--start {text[:40]!r}: expected ISO-8601, e.g. 2026-12-01T02:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def with_state(config: Config, state: State, reason: str = "") -> Config:
    """Ring 0's configuration with a new state label (etag kept for the update)."""
    labels = dict(config.labels) | {"state": state.value, "reason": reason[:120]}
    return replace(config, labels=labels)


def with_target(config: Config, target: str) -> Config:
    return replace(config, target_condition=target)


def device_list_condition(device_ids: Sequence[str]) -> str:
    return f"deviceId IN [{', '.join(literal(d) for d in sorted(device_ids))}]"

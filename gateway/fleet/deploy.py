"""Carrying out rollouts on a :class:`FleetHub`: create, step, cancel, retry, roll back.

Every function here validates first and writes last, so bad input is refused
with nothing created. A step is idempotent: two machines stepping the same
rollout at once at worst see IoT Hub refuse the second write (an existing
id, a stale etag); that step then waits and the next one re-reads and goes on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus

from gateway.fleet.errors import FleetError, HubRefused
from gateway.fleet.hub import Config, FleetHub, literal
from gateway.fleet.prune import CONFIGURATION_LIMIT, DEFAULT_KEEP, Removal, make_room
from gateway.fleet.rollout import (
    ALL,
    FLEET_LABEL,
    INLINE_IDS,
    MCU_CONDITION,
    PERCENT_TAG,
    PIN_TAG,
    RING_TAG,
    Activate,
    Decision,
    Finish,
    Halt,
    Package,
    Plan,
    Rollout,
    StartRing,
    State,
    Wait,
    decide,
    device_list_condition,
    load,
    parse_time,
    ring_id,
    ring_metrics,
    since,
    target_query,
    with_state,
    with_target,
)

#: Checks a package URI before anything is created: raises FleetError if it fails.
UriCheck = Callable[[Package], None]
#: Told about each configuration deleted to stay under the hub's limit.
PruneReport = Callable[[Removal], None]


@dataclass(frozen=True)
class Limits:
    """The hub's configuration limit and how many rollouts per target pruning keeps."""

    configurations: int = CONFIGURATION_LIMIT
    keep: int = DEFAULT_KEEP
    report: PruneReport = lambda _removal: None


def _create(hub: FleetHub, config: Config, limits: Limits) -> None:
    """Create a configuration, pruning superseded ones first if the hub is full."""
    for removal in make_room(hub, 1, limits.configurations, limits.keep):
        limits.report(removal)
    hub.create_configuration(config)


def _mcus(condition: str) -> str:
    return f"({condition}) AND {MCU_CONDITION}"


def count(hub: FleetHub, condition: str) -> int:
    """MCU twins matching ``condition`` (gateways' own twins never count)."""
    rows = hub.query(f"SELECT COUNT() AS n FROM devices WHERE {_mcus(condition)}")
    return int(rows[0].get("n", 0)) if rows else 0


def device_ids(hub: FleetHub, condition: str) -> list[str]:
    """Ids of the MCU twins matching ``condition``."""
    rows = hub.query(target_query(_mcus(condition)))
    return [str(r["deviceId"]) for r in rows if "deviceId" in r]


def get(hub: FleetHub, name: str) -> Rollout:
    rollout = load(name, hub.configurations())
    if rollout is None:
        raise FleetError(f"no rollout named {name!r} (see `mcu-gateway fleet rollouts`)")
    return rollout


def _same(a: Plan, b: Plan) -> bool:
    return (a.package, a.target, a.rings) == (b.package, b.target, b.rings)


def validate(hub: FleetHub, plan: Plan, check_uri: UriCheck | None) -> None:
    """Every check IoT Hub or the fleet would fail on, before anything is written."""
    conditions = [plan.condition(k) for k in range(len(plan.rings))]
    config = plan.config(0, dt.datetime.now(dt.UTC))
    for k, condition in enumerate(conditions):
        errors = hub.test_queries(condition, config.metric_queries if k == 0 else {})
        if errors:
            raise FleetError(f"IoT Hub refuses the query: {errors[0]}")
    total = count(hub, plan.target)
    if total == 0:
        raise FleetError(f"--target matches no MCU: {plan.target}")
    if not plan.percent_mode:
        for ring in plan.rings:
            if (
                ring != ALL
                and count(hub, f"({plan.target}) AND tags.{RING_TAG} = {literal(ring)}") == 0
            ):
                raise FleetError(
                    f"unknown group: no MCU in the target has tags.{RING_TAG} = {ring!r}"
                )
    if check_uri is not None:
        check_uri(plan.package)


def create(
    hub: FleetHub,
    plan: Plan,
    now: dt.datetime,
    check_uri: UriCheck | None = None,
    limits: Limits = Limits(),
) -> Rollout:
    """Start a rollout (ring 0), or resume the same one; another plan under its name fails."""
    configs = hub.configurations()
    existing = load(plan.name, configs)
    if existing is not None:
        if not _same(existing.plan, plan):
            raise FleetError(
                f"a rollout named {plan.name!r} already exists with other settings "
                f"(version {existing.plan.package.version}); choose another --name"
            )
        return existing
    taken = {c.id for c in configs}
    if ring_id(plan.name, 0) in taken:
        raise FleetError(f"configuration {ring_id(plan.name, 0)!r} exists and is not a rollout")
    validate(hub, plan, check_uri)
    scheduled = plan.start is not None and parse_time(plan.start) > now
    if plan.percent_mode and not scheduled:
        # Tags before the ring: IoT Hub's first evaluation then sees the whole ring,
        # and no later step has to page through the target again to repair it.
        _tag_percent(hub, plan, 0)
    _create(hub, plan.config(0, now, State.SCHEDULED if scheduled else State.RUNNING), limits)
    return get(hub, plan.name)


def _short_of_members(rollout: Rollout, k: int) -> bool:
    """Whether IoT Hub's last evaluation counted fewer MCUs in percent ring k than
    its share of the target (the last ring is the target itself: never)."""
    plan = rollout.plan
    group = rollout.configs[k].metrics.get("groupTargeted")
    if k == len(plan.rings) - 1 or not group:
        return False
    return rollout.rings[k].targeted < max(1, math.ceil(group * plan.percent(k) / 100))


def _tag_percent(hub: FleetHub, plan: Plan, k: int) -> None:
    """Give ring k's members (by stable hash) their ring index tag, if they lack one."""
    if k == len(plan.rings) - 1:
        return  # the last ring is the whole target; no tags needed
    members = plan.percent_members(device_ids(hub, plan.target), k)
    tagged = set(device_ids(hub, f"IS_DEFINED(tags.{PERCENT_TAG}.{plan.tag_key})"))
    for device_id in members:
        if device_id not in tagged:
            hub.set_tags(device_id, {PERCENT_TAG: {plan.tag_key: k}})


@dataclass(frozen=True)
class StepResult:
    rollout: Rollout  # after the step
    decision: Decision
    evaluated: Rollout  # the metrics the decision was made on


def step(hub: FleetHub, name: str, now: dt.datetime, limits: Limits = Limits()) -> StepResult:
    """Decide the next step from IoT Hub's metrics and carry it out."""
    rollout = get(hub, name)
    ring = rollout.current_ring
    # Finishes the tagging of a run that was stopped half-way. It pages through the
    # whole target (queries: 20 a minute per S1 unit), so only when IoT Hub counts
    # fewer MCUs in the ring than its share of the target.
    percent = rollout.plan.percent_mode and rollout.state is State.RUNNING
    if percent and ring is not None and _short_of_members(rollout, ring.index):
        _tag_percent(hub, rollout.plan, ring.index)
    decision = decide(rollout, now)
    try:
        _carry_out(hub, rollout, decision, now, limits)
    except HubRefused as exc:
        if exc.status not in (HTTPStatus.CONFLICT, HTTPStatus.PRECONDITION_FAILED):
            raise
        # Another runner took this step first (or changed the rollout): re-read.
        decision = Wait("another runner changed the rollout meanwhile; re-reading it")
    after = get(hub, name) if not isinstance(decision, Wait) else rollout
    return StepResult(after, decision, rollout)


def _carry_out(
    hub: FleetHub, rollout: Rollout, decision: Decision, now: dt.datetime, limits: Limits
) -> None:
    plan, first = rollout.plan, rollout.first
    match decision:
        case Activate():
            if plan.percent_mode:
                _tag_percent(hub, plan, 0)
            fresh = replace(first, metric_queries=plan.config(0, now).metric_queries)
            hub.update_configuration(
                with_state(with_target(fresh, plan.condition(0)), State.RUNNING)
            )
        case StartRing(index=k):
            if plan.percent_mode:
                _tag_percent(hub, plan, k)
            if hub.get_configuration(ring_id(plan.name, k)) is None:
                _create(hub, plan.config(k, now), limits)
        case Halt(reason=reason):
            hub.update_configuration(with_state(first, State.HALTED, reason))
        case Finish(reason=reason):
            hub.update_configuration(with_state(first, State.DONE, reason))
        case Wait():
            pass


def pin(hub: FleetHub, plan: Plan, label: str, devices: list[str]) -> str:
    """A target condition for exactly ``devices``, at any fleet size.

    A short list is inlined as ``deviceId IN [...]``; a long one would make the
    condition too long for IoT Hub, so those twins get a tag instead.
    """
    if len(devices) <= INLINE_IDS:
        return device_list_condition(devices)
    for device_id in devices:
        hub.set_tags(device_id, {PIN_TAG: {plan.tag_key: {label: 1}}})
    return f"tags.{PIN_TAG}.{plan.tag_key}.{label} = 1"


def reached(hub: FleetHub, rollout: Rollout) -> list[str]:
    return device_ids(hub, rollout.reached_condition())


def cancel(hub: FleetHub, name: str) -> Rollout:
    """No new ring, and no new MCU: each ring keeps only the MCUs it already reached."""
    rollout = get(hub, name)
    if rollout.state in (State.CANCELLED, State.ROLLEDBACK):
        raise FleetError(f"rollout {name} is already {rollout.state.value}")
    for config in rollout.configs:
        applied = device_ids(hub, f"configurations.[[{config.id}]].status = 'Applied'")
        label = config.id.rsplit("-", 1)[-1]
        narrowed = with_target(config, pin(hub, rollout.plan, label, applied) if applied else "")
        if config is rollout.first:
            narrowed = with_state(narrowed, State.CANCELLED, "cancelled by the operator")
        hub.update_configuration(narrowed)
    return get(hub, name)


def _extra_config(
    hub: FleetHub, rollout: Rollout, kind: str, package: Package, devices: list[str], suffix: str
) -> Config:
    cid = f"{rollout.plan.name}-{suffix}"
    now = dt.datetime.now(dt.UTC)
    return Config(
        id=cid,
        content={"properties.desired.firmware": package.desired()},
        target_condition=pin(hub, rollout.plan, suffix, devices),
        priority=rollout.plan.priority,
        labels={FLEET_LABEL: kind, "rollout": rollout.plan.name, "version": package.version},
        metric_queries=ring_metrics(cid, package.version, since(now)),
    )


def retry(hub: FleetHub, name: str, limits: Limits = Limits()) -> tuple[Config, list[str]]:
    """Re-target only the failed MCUs of a rollout, with a fresh desired state.

    The gateway does not retry on its own a desired state that failed for
    good, so the retry's desired firmware carries a new ``retry`` counter: the
    operator's explicit retry (see the README's retry policy).
    """
    rollout = get(hub, name)
    reported = "properties.reported.firmware"
    failed_status = f"{reported}.fwUpdateStatus IN ['error', 'rolledback']"
    if rollout.created:  # failures of this rollout, not an earlier attempt's
        created = parse_time(rollout.created)
        failed_status += f" AND {reported}.error.at >= {literal(since(created))}"
    failed = device_ids(hub, f"({rollout.reached_condition()}) AND {failed_status}")
    if not failed:
        raise FleetError(f"rollout {name} has no failed MCU to retry")
    n = 1 + sum(1 for c in rollout.extra if c.labels.get(FLEET_LABEL) == "retry")
    plan = rollout.plan
    config = _extra_config(hub, rollout, "retry", plan.package, failed, f"retry{n}")
    fw = dict(config.content["properties.desired.firmware"])
    fw["retry"] = n
    config = replace(config, content={"properties.desired.firmware": fw})
    errors = hub.test_queries(config.target_condition, {})
    if errors:
        raise FleetError(f"IoT Hub refuses the retry query: {errors[0]}")
    _create(hub, config, limits)
    return config, failed


def previous_package(hub: FleetHub, rollout: Rollout) -> Package | None:
    """The package of the newest finished rollout before this one, same target."""
    configs = hub.configurations()
    best: Rollout | None = None
    for other in {c.labels.get("rollout", "") for c in configs} - {rollout.plan.name, ""}:
        candidate = load(other, configs)
        if (
            candidate is not None
            and candidate.state is State.DONE
            and candidate.created < rollout.created
            and candidate.plan.target == rollout.plan.target
            and candidate.plan.package.version != rollout.plan.package.version
            and (best is None or candidate.created > best.created)
        ):
            best = candidate
    return best.plan.package if best else None


def rollback(
    hub: FleetHub,
    name: str,
    package: Package | None = None,
    check_uri: UriCheck | None = None,
    limits: Limits = Limits(),
) -> tuple[Config, list[str]]:
    """Deploy the previous version to every MCU the rollout reached; no new ring starts."""
    rollout = get(hub, name)
    if rollout.state is State.ROLLEDBACK:
        raise FleetError(f"rollout {name} is already rolled back")
    target = package or previous_package(hub, rollout)
    if target is None:
        raise FleetError(
            f"no earlier finished rollout to the same target to roll {name} back to; "
            "give the version with --package-uri, --check-value, --size and --version"
        )
    devices = reached(hub, rollout)
    if not devices:
        raise FleetError(f"rollout {name} has not reached any MCU; cancel it instead")
    if check_uri is not None:
        check_uri(target)
    down = Package(target.version, target.uri, target.check_value, target.size,
                   target.window, allow_downgrade=True)  # fmt: skip
    if hub.get_configuration(f"{name}-rollback") is not None:
        raise FleetError(f"configuration {name}-rollback already exists")
    config = _extra_config(hub, rollout, "rollback", down, devices, "rollback")
    _create(hub, config, limits)
    hub.update_configuration(
        with_state(rollout.first, State.ROLLEDBACK, f"rolled back to {target.version}")
    )
    return config, devices

"""Keeping a hub under its configuration limit without changing any MCU's firmware.

IoT Hub holds at most 100 automatic configurations (10 on the free tier), and
every ring of every rollout is one, so releases must make room. Deleting a
configuration that still applies to a twin makes that twin "take on the next
highest priority configuration" ("Automatic device management"): an older
version, i.e. a downgrade. So only *fully superseded* configurations go:

- a finished rollout's intermediate rings: its last ring targets a superset
  and, newer at the same priority, wins every twin they target;
- a whole finished rollout (all its configurations, plan included) that is
  older than the ``keep`` newest rollouts to the same target, one of them
  done at no lower priority: that one's last ring targets the whole target
  and, newer, wins every twin of it.

Either only when the hub's ``appliedCount`` says the configuration applies to
no twin as well (the metric is as old as the last evaluation; the structural
reason above holds whatever its age). Oldest first. :func:`plan` is pure;
:func:`make_room` deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.fleet.errors import FleetError, HubRefused
from gateway.fleet.hub import Config, FleetHub
from gateway.fleet.rollout import FLEET_LABEL, Rollout, State, load, rollout_names

#: IoT Hub's limit on a standard-tier hub ("Quotas and throttling").
CONFIGURATION_LIMIT = 100
DEFAULT_KEEP = 2  # the newest rollouts per target kept whole: current and previous
_FINISHED = (State.DONE, State.CANCELLED, State.HALTED, State.ROLLEDBACK)


@dataclass(frozen=True)
class Removal:
    config: Config
    rollout: str
    reason: str  # why deleting it changes no twin
    order: tuple[str, bool, str] = ("", False, "")  # rollout's age, its plan (ring 0) last


def _applied(config: Config) -> int:
    return config.system_metrics.get("appliedCount", 0)


def plan(configs: Sequence[Config], keep: int = DEFAULT_KEEP) -> list[Removal]:
    """Every configuration that may go, oldest first, with the reason it is safe."""
    if keep < 1:
        raise FleetError("--keep must be at least 1")
    rollouts = [r for n in rollout_names(configs) if (r := _load(n, configs)) is not None]
    newest_first: dict[str, list[Rollout]] = {}
    for rollout in sorted(rollouts, key=lambda r: r.created, reverse=True):
        newest_first.setdefault(rollout.plan.target, []).append(rollout)
    removals: list[Removal] = []
    for same_target in newest_first.values():
        for rank, rollout in enumerate(same_target):
            if rollout.state not in _FINISHED:
                continue
            name = rollout.plan.name
            mine = (*rollout.configs, *rollout.extra)
            age = rollout.created
            covered = any(
                newer.state is State.DONE and newer.plan.priority >= rollout.plan.priority
                for newer in same_target[:rank]
            )
            if rank >= keep and covered and all(_applied(c) == 0 for c in mine):
                why = (
                    f"rollout {name} ({rollout.state.value}, {rollout.plan.package.version}) "
                    f"is older than the {keep} kept for its target and applies to no twin"
                )
                # Ring 0 holds the plan: it goes last, so a prune cut short leaves
                # a rollout that still loads and is pruned the next time.
                removals += [Removal(c, name, why, (age, c is rollout.first, c.id)) for c in mine]
                continue
            if rollout.state is State.DONE:
                last = rollout.configs[-1]
                for ring in rollout.configs[1:-1]:
                    if _applied(ring) == 0:
                        why = (
                            f"ring {ring.labels.get('ring', '?')} of finished rollout {name}: "
                            f"its last ring {last.id} covers it and applies instead"
                        )
                        removals.append(Removal(ring, name, why, (age, False, ring.id)))
    loaded = {r.plan.name for r in rollouts}
    for c in configs:  # rings whose rollout lost its plan (an older tool's partial prune)
        name = c.labels.get("rollout", "")
        if FLEET_LABEL in c.labels and name not in loaded and _applied(c) == 0:
            why = f"left over from rollout {name}, whose plan (ring 0) is gone; applies to no twin"
            removals.append(Removal(c, name, why, ("", False, c.id)))
    return sorted(removals, key=lambda r: r.order)


def _load(name: str, configs: Sequence[Config]) -> Rollout | None:
    try:
        return load(name, configs)
    except FleetError:
        return None  # a damaged rollout is left for the operator to look at


def make_room(
    hub: FleetHub, needed: int, limit: int = CONFIGURATION_LIMIT, keep: int = DEFAULT_KEEP
) -> list[Removal]:
    """Delete superseded configurations, oldest first, until ``needed`` more fit."""
    configs = hub.configurations()
    excess = len(configs) + needed - limit
    if excess <= 0:
        return []
    candidates = plan(configs, keep)
    if len(candidates) < excess:
        ours = sum(1 for c in configs if FLEET_LABEL in c.labels)
        raise FleetError(
            f"IoT Hub's configuration limit: {len(configs)} of {limit} in use ({ours} by "
            f"rollouts) and only {len(candidates)} can go without changing any MCU's firmware; "
            "finish or cancel a rollout, or delete other configurations"
        )
    done = candidates[:excess]
    for removal in done:
        delete(hub, removal.config)
    return done


def delete(hub: FleetHub, config: Config) -> None:
    try:
        hub.delete_configuration(config.id, config.etag)
    except HubRefused as exc:
        if exc.status != 404:  # already gone: another runner pruned it
            raise

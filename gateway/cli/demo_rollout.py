"""`mcu-gateway demo --rollout`: phased rollouts over a mixed fleet, one of them halted.

One rollout per model (a deployment carries one package), each in two rings:
the first MCU of the model is the canary, then the whole model. One model's
package is signed with a key the gateway does not trust, so its canary fails,
its rollout halts before the second ring, and the fleet status pinpoints the
failure. The rollouts run on the hub emulator's configurations through the
same code as ``mcu-gateway fleet``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

from gateway.cli.common import CommandError

RINGS = ("canary", "all")


def _name(model: str) -> str:
    """The model's rollout; names take lower-case letters, digits and "-" only."""
    return "demo-" + re.sub(r"[^a-z0-9-]", "-", model.lower())


def _plans(lab: Any, models: list[str], bad: str, version: str, size: Any) -> list[Any]:
    from firmware import keys
    from gateway.fleet.rollout import Package, Plan
    from gateway.lab import sim_kind

    rogue = keys.generate(keys.Algorithm.ED25519)  # a key no gateway trusts
    plans = []
    for model in models:
        release = lab.release(version, model, size(model), key=rogue if model == bad else None)
        package = Package(version, release.url, release.sha256, release.size)
        # The twin reports the model the driver reads (stm32f10x-md for the lab's stm32f103).
        reported = sim_kind(model).device_model
        target = f"tags.[[group]] = 'demo' AND properties.reported.mcu.model = '{reported}'"
        plans.append(Plan(name=_name(model), package=package, target=target, rings=RINGS))
    return plans


def _tag(hub: Any, agents: list[Any]) -> None:
    seen: set[str] = set()
    for agent in agents:
        tags = {"group": "demo"}
        if agent.facts.model not in seen:
            tags["ring"] = "canary"
            seen.add(agent.facts.model)
        hub.set_tags(agent.device_id, tags)


def _table(rollouts: list[Any], started: dict[str, float]) -> Any:
    from rich.table import Table

    table = Table(title="phased rollouts (IoT Hub automatic device configurations)")
    for col in ("rollout", "ring", "applied", "current", "in progress", "failed", "state",
                "seconds"):  # fmt: skip
        table.add_column(col)
    colours = {"done": "green", "halted": "red", "running": "yellow"}
    for r in rollouts:
        ring = r.current_ring
        state = r.state.value
        table.add_row(
            r.plan.name,
            f"{ring.index + 1}/{len(r.plan.rings)} {ring.name}" if ring else "-",
            str(ring.applied) if ring else "", str(ring.current) if ring else "",
            str(ring.in_progress) if ring else "", str(ring.failures) if ring else "",
            f"[{colours.get(state, 'white')}]{state}[/]",
            f"{time.monotonic() - started[r.plan.name]:.1f}",
        )  # fmt: skip
    return table


async def run_rollout(
    lab: Any, agents: list[Any], console: Any, deadline: float, size: Any, version: str
) -> int:
    """Drive the rollouts to their end; 0 when the bad model halted and the rest updated."""
    from rich.live import Live

    from gateway.fleet import FleetError, deploy
    from gateway.fleet.hub import ServiceHub
    from gateway.fleet.rollout import State
    from gateway.fleet.uri import check_package

    # The lab's names for the kinds of MCU (what lab.release takes), not the models the
    # drivers report: an STM32 sim "stm32f103" reports "stm32f10x-md".
    models = sorted({s.model for s in lab.sims})
    if len(models) < 2:
        raise CommandError("--rollout needs a mixed fleet: use --mcus 3 or more")
    bad = "vmcu-h7" if "vmcu-h7" in models else models[-1]

    def reported(server: Any) -> bool:
        # Targets select on the reported mcu.model: wait until every twin has it.
        twins = server.hub.twins
        return all(a.device_id in twins and "mcu" in twins[a.device_id].reported for a in agents)

    try:
        await asyncio.to_thread(lab.hub.wait_for, reported, max(1.0, deadline - time.monotonic()))
    except TimeoutError as exc:
        raise CommandError("the MCUs did not all report their model in time") from exc
    hub = ServiceHub(lab.facts.service_connection_string, lab.facts.ca_path)
    images_ca = lab.root / "images-ca.pem"
    await asyncio.to_thread(_tag, hub, agents)
    # IoT Hub's queries trail the twins (eventual consistency): deploy's checks
    # count the target by query, so wait until the tags are visible there.
    while await asyncio.to_thread(deploy.count, hub, "tags.[[group]] = 'demo'") < len(agents):
        if time.monotonic() > deadline:
            raise CommandError("the hub's queries never showed the demo tags")
        await asyncio.sleep(0.2)
    plans = _plans(lab, models, bad, version, size)
    console.print(f"tagged {len(agents)} MCUs group=demo, the first of each model ring=canary; "
                  f"{bad}'s package is signed with an untrusted key")  # fmt: skip
    started: dict[str, float] = {}
    for plan in plans:
        now = dt.datetime.now(dt.UTC)
        try:
            await asyncio.to_thread(
                deploy.create, hub, plan, now, lambda p: check_package(p, images_ca)
            )
        except FleetError as exc:
            raise CommandError(str(exc)) from exc
        started[plan.name] = time.monotonic()
        console.print(f"rollout {plan.name}: {version} to {plan.target}, rings canary then all")

    def step_all() -> list[Any]:
        now = dt.datetime.now(dt.UTC)
        results = []
        for plan in plans:
            result = deploy.step(hub, plan.name, now)
            if result.decision.__class__.__name__ in ("StartRing", "Halt", "Finish"):
                console.print(f"  {plan.name}: {_say(result.decision)}")
            results.append(result.rollout)
        return results

    rollouts: list[Any] = []
    with Live(console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            rollouts = await asyncio.to_thread(step_all)
            live.update(_table(rollouts, started))
            if all(r.state in (State.DONE, State.HALTED) for r in rollouts):
                break
            await asyncio.sleep(0.5)  # the hub recounts metrics every evaluation pass
    console.print()
    await _show_status(hub, console)
    states = {r.plan.name: r.state for r in rollouts}
    ok = all(
        states.get(p.name) is (State.HALTED if p.name == _name(bad) else State.DONE)
        for p in plans
    )
    if ok:
        console.print(f"[green]as expected: {bad} halted at its canary, every other model's "
                      f"MCUs run {version}[/]")  # fmt: skip
        return 0
    console.print("[red]the rollouts did not end as expected[/]: "
                  + ", ".join(f"{k}={v.value}" for k, v in states.items()))  # fmt: skip
    return 1


def _say(decision: Any) -> str:
    reason = getattr(decision, "reason", "")
    name = decision.__class__.__name__
    if name == "StartRing":
        return f"{reason}; ring {decision.index + 1} started"
    if name == "Halt":
        return f"[red]HALTED[/]: {reason}"
    return f"[green]done[/]: {reason}"


async def _show_status(hub: Any, console: Any) -> None:
    from rich.table import Table

    from gateway.fleet.status import collect

    status = await asyncio.to_thread(collect, hub, "tags.[[group]] = 'demo'")
    table = Table(title="fleet status: failed MCUs, pinpointed")
    for col in ("device", "gateway", "port", "model", "error", "phase", "message"):
        table.add_column(col)
    for f in status.failures:
        table.add_row(f.device_id, f.gateway, f.port, f.model, f.code, f.phase, f.message)
    for model, versions in status.versions_by_model.items():
        console.print(f"{model}: " + ", ".join(f"{n} on {v}" for v, n in versions.items()))
    console.print(table)

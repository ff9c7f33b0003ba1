"""Successive releases never hit IoT Hub's configuration limit, and pruning changes no firmware.

One emulated S1 hub (100 configurations at most, IoT Hub's real ratios sped
up by ``--time-scale``), ``--models`` models of ``--per-model`` simulated
MCUs each (``bench.fleet_sim``), tagged canary / pilot / rest. Releases go
out one after another, round robin over the models, each a three-ring
rollout (canary, pilot, all) run to its end by ``gateway.fleet.deploy`` with
automatic pruning. After every release the benchmark checks that every MCU
of the released model wants the new version and that no other MCU's desired
firmware changed (a prune that deleted a configuration some twin got its
firmware from would hand that twin to an older one).

Reported: releases done, the most configurations the hub held, how many
were pruned, and any firmware change outside the released model (target: 0).

    python -m bench.fleet_releases [--releases 120] [--models 20] [--per-model 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_sim import Devices, seed, start_hub

RINGS = ("canary", "pilot")


def _desired(emulator: Any) -> dict[str, str | None]:
    def read(server: Any) -> dict[str, str | None]:
        return {
            d: (t.desired.get("firmware") or {}).get("fwVersion")
            for d, t in server.hub.twins.items()
            if "mcu" in t.reported
        }

    result: dict[str, str | None] = emulator.call(read)
    return result


def run(args: argparse.Namespace, root: Path) -> int:
    from gateway.fleet import deploy
    from gateway.fleet.hub import ServiceHub
    from gateway.fleet.prune import Removal
    from gateway.fleet.rollout import Package, Plan, State

    emulator = start_hub(root / "hub", "127.86.0.", args.time_scale)
    try:
        models = [f"vmcu-{i:02d}" for i in range(args.models)]
        ids = seed(emulator, dict.fromkeys(models, args.per_model))

        def tag_rings(server: Any) -> None:
            for device_id in ids:
                n = int(device_id.rsplit("-", 1)[1])
                if n < len(RINGS):
                    twin = server.hub.twins[device_id]
                    server.hub.twins[device_id] = twin.patch_tags({"ring": RINGS[n]})

        emulator.call(tag_rings)
        hub = ServiceHub(emulator.facts.service_connection_string, emulator.facts.ca_path)
        pruned: list[Removal] = []
        limits = deploy.Limits(report=pruned.append)
        most, changed_elsewhere, t0 = 0, 0, time.monotonic()
        with Devices(emulator):
            for k in range(args.releases):
                model, version = models[k % len(models)], f"{1 + k // len(models)}.0.0"
                before = _desired(emulator)
                target = f"properties.reported.mcu.model = '{model}'"
                package = Package(version, f"https://cdn.example/{model}-{version}.mcufw",
                                  "ab" * 32, 4096)  # fmt: skip
                plan = Plan(f"{model}-{version.replace('.', '-')}", package, target,
                            (*RINGS, "all"))  # fmt: skip
                deploy.create(hub, plan, dt.datetime.now(dt.UTC), None, limits)
                while True:
                    most = max(most, len(hub.configurations()))
                    result = deploy.step(hub, plan.name, dt.datetime.now(dt.UTC), limits)
                    if result.rollout.state is State.DONE:
                        break
                    if result.rollout.state is not State.RUNNING:
                        print(f"release {plan.name}: {result.rollout.state.value}")
                        return 1
                    time.sleep(60 / args.time_scale)
                after = _desired(emulator)
                mine = [d for d in after if d.startswith(model + "-")]
                others = [d for d in after if not d.startswith(model + "-")]
                changed_elsewhere += sum(before[d] != after[d] for d in others)
                if any(after[d] != version for d in mine):
                    print(f"release {plan.name}: not every {model} MCU wants {version}")
                    return 1
        wall = time.monotonic() - t0
        print(f"{args.releases} releases over {args.models} models x {args.per_model} MCUs in "
              f"{wall:.0f} s ({wall * args.time_scale / 3600:.1f} model hours)")  # fmt: skip
        print(f"most configurations held: {most} of 100; pruned: {len(pruned)} "
              f"({sum('older than' in r.reason for r in pruned)} of whole old rollouts, "
              f"{sum('covers it' in r.reason for r in pruned)} superseded rings)")  # fmt: skip
        print(f"desired firmware changed outside the released model: {changed_elsewhere}")
        return 0 if changed_elsewhere == 0 and most <= 100 else 1
    finally:
        emulator.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--releases", type=int, default=120)
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--per-model", type=int, default=10)
    p.add_argument("--time-scale", type=float, default=3000.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-releases-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())

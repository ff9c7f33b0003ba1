"""Parallel three-ring rollouts at IoT Hub's real ratios: no throttle reaches the user.

The emulator runs S1 with one unit (configurations and queries 20 a minute,
twin updates 50 a second), evaluates configurations every five minutes and
answers queries from a view up to a minute old, all sped up together by
``--time-scale``. N simulated MCUs of two models (``bench.fleet_sim``) update
some model minutes after their desired firmware changes. Two rollouts, one
per model, with percent rings 1,10,100, run at once in two threads, each
stepping ``gateway.fleet.deploy`` every ``--interval`` model seconds (the
CLI's default pace) through its own official-SDK client.

Reported: model minutes to finish each rollout, the 429s the hub answered
and the tool absorbed (retried after Retry-After), and any error that
reached the user (the target: none).

    python -m bench.fleet_parallel [--mcus 1000] [--time-scale 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.fleet_sim import Devices, seed, start_hub

MODELS = ("vmcu-f4", "vmcu-l0")


def _rollout(
    hub_facts: Any, model: str, scale: float, interval: float, out: dict[str, Any]
) -> None:
    from gateway.fleet import FleetError, deploy
    from gateway.fleet.hub import ServiceHub
    from gateway.fleet.rollout import Package, Plan, State

    hub = ServiceHub(hub_facts.service_connection_string, hub_facts.ca_path)
    out["hub"] = hub
    plan = Plan(
        f"{model}-v2",
        Package("2.0.0", f"https://cdn.example/{model}-2.0.0.mcufw", "ab" * 32, 4096),
        f"tags.[[group]] = 'bench' AND properties.reported.mcu.model = '{model}'",
        ("1%", "10%", "100%"),
    )  # fmt: skip
    started = time.monotonic()
    try:
        deploy.create(hub, plan, dt.datetime.now(dt.UTC))
        while True:
            result = deploy.step(hub, plan.name, dt.datetime.now(dt.UTC))
            state = result.rollout.state
            if state is State.DONE:
                break
            if state is not State.RUNNING:
                raise FleetError(
                    f"rollout {plan.name} ended {state.value}: {result.rollout.reason}"
                )
            time.sleep(interval / scale)
    except FleetError as exc:
        out["error"] = str(exc)
    out["model_minutes"] = (time.monotonic() - started) * scale / 60


def run(args: argparse.Namespace, root: Path) -> int:
    emulator = start_hub(root / "hub", "127.87.0.", args.time_scale)
    try:
        per_model = args.mcus // len(MODELS)
        seed(emulator, dict.fromkeys(MODELS, per_model))
        print(f"{per_model * len(MODELS)} MCU twins (+2 gateways) on S1, 1 unit, "
              f"time scale {args.time_scale:g}")  # fmt: skip
        results: dict[str, dict[str, Any]] = {m: {} for m in MODELS}
        with Devices(emulator):
            threads = [
                threading.Thread(
                    target=_rollout,
                    args=(emulator.facts, m, args.time_scale, args.interval, results[m]),
                )
                for m in MODELS
            ]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.timeout)
            wall = time.monotonic() - t0
        refused = emulator.call(lambda s: dict(s.throttle.refused))
        taken = emulator.call(lambda s: dict(s.throttle.taken))
        failed = False
        for model, r in results.items():
            absorbed = r["hub"].retry.retried if "hub" in r else {}
            line = (f"{model}: {'ERROR ' + r['error'] if 'error' in r else 'done'} in "
                    f"{r.get('model_minutes', float('nan')):.1f} model minutes; "
                    f"429s absorbed: {absorbed.get(429, 0)}")  # fmt: skip
            print(line)
            failed |= "error" in r or "model_minutes" not in r
        print("hub answered 429 to: " + (", ".join(
            f"{op.value} {n}" for op, n in refused.items()) or "nothing"))  # fmt: skip
        print(
            f"wall time {wall:.1f} s ({wall * args.time_scale / 60:.1f} model minutes); "
            f"errors reaching the user: {sum('error' in r for r in results.values())}"
        )
        print("requests: " + ", ".join(f"{op.value} {n}" for op, n in taken.items()))
        return 1 if failed else 0
    finally:
        emulator.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mcus", type=int, default=1000)
    p.add_argument("--time-scale", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=60.0, help="model seconds between steps")
    p.add_argument("--timeout", type=float, default=900.0, help="real seconds")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-parallel-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())

"""`mcu-gateway fleet status` over N twins in the hub emulator (target: under 2 s at 10,000).

Seeds N twins straight into the emulator's state (a mix of models, versions,
rings and statuses, about 2% failed with an error section), then times:

- ``collect``: the queries ``fleet status`` runs (one GROUP BY per attribute), through the official
  service SDK over HTTPS, in this process (median of ``--repeat`` runs);
- ``cli``: the whole ``mcu-gateway fleet status --json`` command as a child
  process, interpreter start-up and imports included;
- ``cli --html``: the same writing the HTML report.

    python -m bench.fleet_status [--twins 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 2.0
MODELS = ("vmcu-f4", "vmcu-l0", "vmcu-h7")
STATUSES = ("current",) * 90 + ("downloading", "applying", "verifying") * 2 + ("error",) * 2


def _start_hub(state: Path, tier: str) -> Any:
    from simulators.hub import HubEmulator, StartupError
    from simulators.hub.addresses import first_free
    from simulators.hub.throttling import Tier

    def start(address: str) -> Any:
        # IoT Hub's ratios, 60 times faster: the repeated runs stay in the S1 query budget.
        hub = HubEmulator(state, address, time_scale=60.0, tier=Tier(tier))
        hub.start()
        return hub

    try:
        return first_free((f"127.88.0.{n}" for n in range(1, 40)), start)
    except StartupError as exc:
        raise SystemExit(str(exc)) from exc


def _twin(i: int, rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any]]:
    model = MODELS[i % len(MODELS)]
    status = rng.choice(STATUSES)
    version = "2.0.0" if status == "current" and rng.random() < 0.7 else "1.0.0"
    fw: dict[str, Any] = {"fwUpdateStatus": status, "currentFwVersion": version}
    if status == "error":
        fw["error"] = {"code": "INCOMPATIBLE_MODEL", "message": "package built for vmcu-f4",
                       "phase": "verifying", "at": "2026-11-29T10:00:00Z"}  # fmt: skip
    elif status != "current":
        fw |= {"progress": rng.randrange(100), "pendingFwVersion": "2.0.0"}
    reported = {
        "mcu": {"model": model, "gatewayDeviceId": f"gw-{i // 250:03d}",
                "serialPort": f"/dev/ttyUSB{i % 250}"},
        "firmware": fw,
    }  # fmt: skip
    ring = "canary" if i % 100 == 0 else "pilot" if i % 10 == 0 else "broad"
    return f"mcu-{i:05d}", {"group": f"plant-{i % 4}", "ring": ring}, reported


def seed(hub: Any, n: int) -> float:
    from simulators.hub.registry import Device

    rng = random.Random(12)
    twins = [_twin(i, rng) for i in range(n)]

    def apply(server: Any) -> None:
        for device_id, tags, reported in twins:
            server.hub.put_device(Device(device_id))
            twin = server.hub.twins[device_id].patch_tags(tags).patch_reported(reported)
            server.hub.twins[device_id] = twin

    started = time.perf_counter()
    hub.call(apply, timeout=600)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twins", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rings", type=int, default=3,
                        help="rollout rings (configurations with metrics) the hub evaluates "
                             "meanwhile (default 3)")  # fmt: skip
    parser.add_argument("--tier", default="S1", choices=("S1", "S2", "S3"),
                        help="hub tier whose query throttle applies (default S1)")  # fmt: skip
    args = parser.parse_args(argv)
    from gateway.fleet.hub import ServiceHub
    from gateway.fleet.status import collect
    from simulators.hub.throttling import Operation

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        hub = _start_hub(root / "hub", args.tier)
        try:
            facts = hub.facts
            print(f"seeding {args.twins} twins ... ", end="", flush=True)
            print(f"{seed(hub, args.twins):.1f} s")
            service = ServiceHub(facts.service_connection_string, facts.ca_path)
            pass_s = _add_rollout(hub, service, args.rings)
            print(f"{args.rings} ring configurations; one evaluation pass: {pass_s:.3f} s")
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                status = collect(service)
                times.append(time.perf_counter() - started)
            assert status.total == args.twins, status.total
            cs = root / "service.cs"
            cs.touch(mode=0o600)
            cs.write_text(facts.service_connection_string)
            base = [sys.executable, "-m", "gateway.cli", "fleet", "status", "--service-cs-file",
                    str(cs), "--ca-file", facts.ca_path]  # fmt: skip
            cli = _timed([*base, "--json"], args.repeat)
            html = _timed([*base, "--html", str(root / "fleet.html")], args.repeat)
            out = subprocess.run([*base, "--json"], capture_output=True, check=True, timeout=120)
            result = json.loads(out.stdout)
            taken = hub.call(lambda s: dict(s.throttle.taken))
            refused = hub.call(lambda s: dict(s.throttle.refused))
        finally:
            hub.stop()
    median = statistics.median
    print(f"{'what':<22}{'median s':>10}{'max s':>10}")
    for name, values in (("collect", times), ("cli --json", cli),
                         ("cli --html", html)):  # fmt: skip
        print(f"{name:<22}{median(values):>10.3f}{max(values):>10.3f}")
    print(f"twins {result['total']}, failed listed {len(result['failures'])}, "
          f"in progress {len(result['in_progress'])}, statuses {result['by_status']}")  # fmt: skip
    print(f"hub {args.tier}: queries {taken.get(Operation.QUERY, 0)}, answered 429: "
          f"{refused.get(Operation.QUERY, 0)} (waited out by the tool)")  # fmt: skip
    ok = median(cli) < TARGET_S
    print(f"target: fleet status over {args.twins} twins under {TARGET_S:g} s: "
          f"{'met' if ok else 'NOT met'} ({median(cli):.2f} s for the whole command)")  # fmt: skip
    return 0 if ok else 1


def _add_rollout(hub: Any, service: Any, rings: int) -> float:
    """Configurations like a running rollout's, so evaluation passes run alongside."""
    from gateway.fleet.rollout import Package, Plan

    if rings < 1:
        return 0.0
    names = (*("canary", "pilot", "broad")[: rings - 1], "all")
    plan = Plan("bench", Package("2.0.0", "https://images.invalid/fw", "ab" * 32, 1000),
                "tags.[[group]] = 'plant-0'", rings=names)  # fmt: skip
    for k in range(len(names)):
        service.create_configuration(plan.config(k, dt.datetime.now(dt.UTC)))

    def one_pass(server: Any) -> float:
        started = time.perf_counter()
        server.configurations.evaluate(server.hub.twins)
        return time.perf_counter() - started

    return float(hub.call(one_pass, timeout=120))


def _timed(cmd: list[str], repeat: int) -> list[float]:
    times = []
    env = {**os.environ, "NO_PROXY": "*"}
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, timeout=120, env=env)
        times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    sys.exit(main())

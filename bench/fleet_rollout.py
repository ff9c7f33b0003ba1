"""A phased rollout to N simulated MCUs on one gateway, timed ring by ring.

Starts the hub + DPS emulator, the HTTPS image server and N virtual MCUs
(``gateway.lab.Lab`` with ``grouped_sims``), runs the real gateway as
``mcu-gateway run`` in a child process, tags the fleet into rings through the
service SDK, then drives ``fleet deploy`` logic (``gateway.fleet.deploy``) over
IoT Hub configurations until the rollout finishes or halts. A few MCUs of
another model are in the target on purpose: their package check refuses the
image, and they must show up as pinpointed failures without halting the
rollout (they stay under ``--max-failure-rate``).

Reported: per ring its size, the seconds from its configuration's creation to
the decision that passed it, and its failures; then every healthy MCU current
and the failed ones listed with device id, gateway, port and error code.

    python -m bench.fleet_rollout [--mcus 250] [--refused 5] [--rings 5,45,all]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NEW_VERSION = "2.0.0"
GOOD, BAD = "vmcu-f4", "vmcu-l0"


async def _start_lab(root: Path, models: list[str], time_scale: float) -> Any:
    from gateway.lab import Lab
    from simulators.hub.addresses import first_free_async
    from simulators.hub.errors import StartupError

    async def start(address: str) -> Any:
        lab = Lab(root / f"lab-{address.rsplit('.', 1)[1]}", address, models,
                  grouped_sims=True, hub_time_scale=time_scale)  # fmt: skip
        await lab.__aenter__()
        return lab

    try:
        return await first_free_async((f"127.89.0.{n}" for n in range(1, 40)), start)
    except StartupError as exc:
        raise SystemExit(str(exc)) from exc


async def _wait(lab: Any, predicate: Any, within: float, what: str) -> float:
    started = time.monotonic()
    try:
        await asyncio.to_thread(lab.hub.wait_for, predicate, within)
    except TimeoutError:
        raise SystemExit(f"timed out after {within:g}s waiting for {what}") from None
    return time.monotonic() - started


async def run(args: argparse.Namespace, root: Path) -> int:
    from gateway.fleet import deploy
    from gateway.fleet.hub import ServiceHub
    from gateway.fleet.rollout import Finish, Halt, Package, Plan, StartRing, State, Wait
    from gateway.fleet.status import collect
    from gateway.fleet.uri import check_package
    from gateway.naming import device_id_for

    n = args.mcus
    step = n // max(args.refused, 1)
    refused = {k * step + step - 1 for k in range(args.refused)}  # spread over the fleet
    models = [BAD if i in refused else GOOD for i in range(n)]
    lab = await _start_lab(root, models, args.time_scale)
    gateway: asyncio.subprocess.Process | None = None
    try:
        flashes = f"max_concurrent_flashes = {args.max_flashes}"
        text = re.sub(r"(?m)^max_concurrent_flashes = .*$", flashes, lab.config_text())
        config = lab.root / "gateway.toml"
        config.write_text(text)
        ids = [device_id_for(bytes.fromhex(s.uid), s.model) for s in lab.sims]
        log = (lab.root / "gateway.log").open("wb")
        t0 = time.monotonic()
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
            stdout=log, stderr=log,
        )  # fmt: skip

        def reported(s: Any) -> bool:
            return all(
                d in s.hub.twins and "fwUpdateStatus" in s.hub.twins[d].reported.get("firmware", {})
                for d in ids
            )

        await _wait(lab, reported, args.timeout, f"{n} MCUs online and reported")
        print(
            f"{n} MCUs online and reported in {time.monotonic() - t0:.1f} s "
            f"({models.count(BAD)} of them {BAD}, whose package check will refuse {GOOD}'s)"
        )

        hub = ServiceHub(lab.facts.service_connection_string, lab.facts.ca_path)
        sizes = [int(r) for r in args.rings.split(",")[:-1]]
        good = [d for d, m in zip(ids, models, strict=True) if m == GOOD]
        names = ["canary", "pilot", "broad"][: len(sizes)]
        ring_of: dict[str, str] = {}
        cursor = 0
        for name, size in zip(names, sizes, strict=True):
            for d in good[cursor : cursor + size]:
                ring_of[d] = name
            cursor += size
        t_tag = time.monotonic()
        for d in ids:
            tags = {"group": "bench"} | ({"ring": ring_of[d]} if d in ring_of else {})
            await asyncio.to_thread(hub.set_tags, d, tags)
        print(f"tagged {n} twins through the service SDK in {time.monotonic() - t_tag:.1f} s")

        release = lab.release(NEW_VERSION, GOOD, args.size)
        plan = Plan(
            name="bench", package=Package(NEW_VERSION, release.url, release.sha256, release.size),
            target="tags.[[group]] = 'bench'", rings=(*names, "all"),
            max_failure_rate=args.max_failure_rate,
        )  # fmt: skip
        ca = lab.root / "images-ca.pem"
        t_deploy = time.monotonic()
        await asyncio.to_thread(deploy.create, hub, plan, dt.datetime.now(dt.UTC),
                                lambda p: check_package(p, ca))  # fmt: skip
        ring_started = {0: t_deploy}
        ring_passed: dict[int, float] = {}
        ring_final: dict[int, Any] = {}  # each ring's metrics when it was judged
        rollout: Any = None
        deadline = t_deploy + args.timeout
        while time.monotonic() < deadline:
            result = await asyncio.to_thread(deploy.step, hub, "bench", dt.datetime.now(dt.UTC))
            rollout, decision = result.rollout, result.decision
            now = time.monotonic()
            judged = result.evaluated.current_ring
            if judged is not None and not isinstance(decision, Wait):
                ring_final[judged.index] = judged
            if isinstance(decision, StartRing):
                ring_passed[decision.index - 1] = now
                ring_started[decision.index] = now
                print(
                    f"{now - t_deploy:7.1f} s  {decision.reason}; ring {decision.index + 1} started"
                )
            elif isinstance(decision, Finish | Halt):
                ring_passed[len(ring_started) - 1] = now
                print(
                    f"{now - t_deploy:7.1f} s  {type(decision).__name__.lower()}: {decision.reason}"
                )
            if rollout.state in (State.DONE, State.HALTED):
                break
            await asyncio.sleep(args.interval)
        else:
            print(f"rollout not finished after {args.timeout:g} s")
        healthy = [d for d, m in zip(ids, models, strict=True) if m == GOOD]

        def settled(s: Any) -> bool:
            # A ring passes at its threshold; the rest of its MCUs finish afterwards.
            return all(
                s.hub.twins[d].reported.get("firmware", {}).get("currentFwVersion") == NEW_VERSION
                for d in healthy
            )

        if rollout is not None and rollout.state is State.DONE:
            await _wait(lab, settled, max(1.0, deadline - time.monotonic()), "healthy MCUs")
            print(f"{time.monotonic() - t_deploy:7.1f} s  every {GOOD} MCU runs {NEW_VERSION}")
        status = await asyncio.to_thread(collect, hub, "tags.[[group]] = 'bench'")
    finally:
        if gateway is not None and gateway.returncode is None:
            gateway.terminate()
            try:
                async with asyncio.timeout(30):
                    await gateway.wait()
            except TimeoutError:
                gateway.kill()
                await gateway.wait()
        await lab.__aexit__(None, None, None)

    print(f"\n{'ring':<10}{'MCUs':>6}{'current':>9}{'failed':>8}{'seconds':>9}")
    for started in rollout.rings if rollout else ():
        ring = ring_final.get(started.index, started)
        seconds = ring_passed.get(ring.index, float("nan")) - ring_started[ring.index]
        print(f"{ring.name:<10}{ring.applied:>6}{ring.current:>9}{ring.failures:>8}{seconds:>9.1f}")
    current = status.versions_by_model.get(GOOD, {}).get(NEW_VERSION, 0)
    print(f"\n{GOOD}: {current} of {models.count(GOOD)} current on {NEW_VERSION}; "
          f"failures listed: {len(status.failures)}")  # fmt: skip
    for f in status.failures:
        print(f"  {f.device_id}  gateway {f.gateway}  port {f.port}  {f.model}  {f.code} "
              f"({f.phase})")  # fmt: skip
    ok = (
        rollout is not None and rollout.state is State.DONE and current == models.count(GOOD)
        and {f.model for f in status.failures} <= {BAD}
        and len(status.failures) == models.count(BAD)
    )  # fmt: skip
    print("every healthy MCU current and every refused one listed: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcus", type=int, default=250)
    parser.add_argument("--refused", type=int, default=5, help=f"{BAD} MCUs in the target")
    parser.add_argument(
        "--rings",
        default="5,45,all",
        help="sizes of the tagged rings, then 'all' (default 5,45,all)",
    )
    parser.add_argument("--size", type=int, default=32 * 1024, help="firmware bytes")
    parser.add_argument("--max-flashes", type=int, default=8)
    parser.add_argument("--max-failure-rate", type=float, default=0.05)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
    parser.add_argument("--time-scale", type=float, default=300.0,
                        help="hub speed-up, every cadence together (300: a 5-minute "
                             "evaluation takes 1 s)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())

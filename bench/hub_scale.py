"""Scale of the hub emulator: N official SDK clients in one process against one hub.

Runs ``mcu-gateway hub`` as its own process so its CPU and RSS are measured
alone, registers N devices through the service SDK, connects N
``IoTHubDeviceClient``s at once, then times twin GET round trips.

    python -m bench.hub_scale [--clients 250] [--rounds 4] [--host 127.0.9.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _run(clients: int, rounds: int, host: str, state: Path) -> list[tuple[str, str]]:
    from azure.iot.device.aio import IoTHubDeviceClient
    from azure.iot.hub import IoTHubRegistryManager

    hub = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-m", "gateway.cli", "hub", "--state", str(state), "--host", host],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.stdout is not None
        facts = json.loads(hub.stdout.readline())
        os.environ["REQUESTS_CA_BUNDLE"] = facts["ca_path"]
        ca = Path(facts["ca_path"]).read_text()  # noqa: ASYNC240 - setup, not timed
        registry = IoTHubRegistryManager.from_connection_string(facts["service_connection_string"])
        strings = []
        for i in range(clients):
            device_id = f"bench-{i:04d}"
            device = registry.create_device_with_sas(device_id, None, None, "enabled")
            key = device.authentication.symmetric_key.primary_key
            strings.append(
                f"HostName={facts['hostname']};DeviceId={device_id};SharedAccessKey={key}"
            )
        rss_idle, cpu0 = _rss_mib(hub.pid), _cpu_seconds(hub.pid)

        devices: list[Any] = [
            IoTHubDeviceClient.create_from_connection_string(s, server_verification_cert=ca)
            for s in strings
        ]
        t0 = time.perf_counter()
        async with asyncio.timeout(300):
            await asyncio.gather(*(d.connect() for d in devices))
        connect_s = time.perf_counter() - t0
        cpu_connect = _cpu_seconds(hub.pid) - cpu0

        async def round_trip(device: Any) -> float:
            start = time.perf_counter()
            await device.get_twin()
            return time.perf_counter() - start

        # The first get_twin also subscribes; time only the later, steady-state ones.
        async with asyncio.timeout(300):
            await asyncio.gather(*(d.get_twin() for d in devices))
            cpu1, latencies = _cpu_seconds(hub.pid), []
            for _ in range(rounds):
                latencies += await asyncio.gather(*(round_trip(d) for d in devices))
        cpu_twins = _cpu_seconds(hub.pid) - cpu1
        rss_loaded = _rss_mib(hub.pid)
        async with asyncio.timeout(120):
            await asyncio.gather(*(d.shutdown() for d in devices))
        ms = [x * 1000 for x in latencies]
        return [
            ("clients", f"{clients}"),
            ("time for all to connect", f"{connect_s:.2f} s"),
            ("hub CPU during connects", f"{cpu_connect:.2f} s"),
            ("twin GETs timed", f"{len(ms)} ({rounds} rounds x {clients}, concurrent)"),
            ("twin round trip p50", f"{percentile(ms, 0.50):.1f} ms"),
            ("twin round trip p99", f"{percentile(ms, 0.99):.1f} ms"),
            ("twin round trip mean", f"{statistics.fmean(ms):.1f} ms"),
            ("hub CPU per twin GET", f"{cpu_twins / len(ms) * 1e6:.0f} us"),
            ("hub RSS idle (devices registered)", f"{rss_idle:.1f} MiB"),
            ("hub RSS with all connected", f"{rss_loaded:.1f} MiB"),
            ("hub RSS per connected client", f"{(rss_loaded - rss_idle) / clients * 1024:.0f} KiB"),
        ]
    finally:
        hub.terminate()
        hub.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--host", default="127.0.9.1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        rows = asyncio.run(_run(args.clients, args.rounds, args.host, Path(state)))
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()

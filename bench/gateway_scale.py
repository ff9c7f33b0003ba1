"""Scale of the gateway: N virtual MCUs on one gateway, brought online and updated.

For each N it starts the hub + DPS emulator, the HTTPS image server and N
virtual MCUs (``gateway.lab.Lab`` with ``grouped_sims``: one ``sim --count K``
process per model, paced at the link rate), then the gateway in a child
process of its own (this module with ``--gateway-child``), so the gateway's
RSS, threads and fds are read from its own ``/proc/PID`` and nothing else in
this process (hub emulator, image server) is counted. The child runs
``gateway.service.Gateway`` exactly as ``mcu-gateway run`` does and answers
``report`` on stdin with its ``/proc/self`` numbers and every agent's
``last_result`` (``began_at``: the update run started; ``first_data_at``: the
transfer started, right before the first DATA frame).

Measured per N:
- gateway RSS and threads at idle (libraries imported, no MCU), with all MCUs
  online, and after the rollout (plus peak RSS, VmHWM); per MCU = (online - idle) / N;
- time from gateway start until all N devices are connected at the hub, and until
  every twin carries the MCU's initial report;
- desired firmware set on every twin through the service SDK
  (``IoTHubRegistryManager.update_twin``, a few threads with one manager each);
  each MCU's latency is measured from the moment its own call was sent;
- desired change -> gateway starts the update, and -> first DATA frame (p50, p99);
- total time from the first desired change until every twin reports ``current``
  with the new version;
- downloads of each package at the image server (must be 1 each).

    python -m bench.gateway_scale [--mcus 32,128,250] [--models vmcu-f4,vmcu-l0,vmcu-h7]
                                  [--size 32768] [--baud 921600] [--max-flashes 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile
from gateway.config import PolicySettings

NEW_VERSION = "2.0.0"
MODELS = ("vmcu-f4", "vmcu-l0", "vmcu-h7")
_SET_WORKERS = 4  # service SDK threads setting desired twins
_POLL_S = 0.1  # hub state polling; bounds the resolution of the "all ..." times
_CHILD_TIMEOUT_S = 60.0  # any answer from the gateway child


# ---------------------------------------------------------------- /proc


def _proc_facts(pid: int | str = "self") -> dict[str, int]:
    facts: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            facts[key] = int(value.split()[0])  # KiB
        elif key == "Threads":
            facts[key] = int(value)
    facts["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    facts["cpu_ms"] = proc_cpu_ms(pid)
    return facts


def proc_cpu_ms(pid: int | str = "self") -> int:
    """User + system CPU of a live process so far, in milliseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks * 1000 // os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the gateway child


async def _child_main(config_path: Path, log_path: Path) -> None:
    import logging

    import azure.iot.device.aio  # noqa: F401 - imported before the baseline, as in steady state

    from gateway.config import load_config
    from gateway.logs import setup_logging
    from gateway.service import Gateway

    config = load_config(config_path)
    setup_logging(config.gateway.log_format.value, config.gateway.log_level)
    root = logging.getLogger()
    handler = logging.FileHandler(log_path)
    handler.setFormatter(root.handlers[0].formatter)
    for f in root.handlers[0].filters:
        handler.addFilter(f)
    root.handlers[:] = [handler]

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    answer({"proc": _proc_facts()})  # the baseline: interpreter + libraries, no gateway
    gateway = Gateway(config)
    task: asyncio.Task[None] | None = None
    stopper = asyncio.create_task(stop.wait())
    try:
        while True:
            line_task = asyncio.create_task(reader.readline())
            await asyncio.wait([line_task, stopper], return_when=asyncio.FIRST_COMPLETED)
            if not line_task.done():
                line_task.cancel()
                break
            command = line_task.result().decode().strip()
            if command in ("", "stop"):
                break
            if command == "start" and task is None:
                task = asyncio.create_task(gateway.run(stop))
                answer({"started": time.time()})
            elif command == "report":
                agents = {a.device_id: a.last_result for a in gateway.agents.values()}
                kinds = collections.Counter(
                    re.sub(r"[-_ ]?\d+", "", t.name) for t in threading.enumerate()
                )
                answer({"proc": _proc_facts(), "agents": agents, "threads": kinds})
    finally:
        stop.set()
        if task is not None:
            async with asyncio.timeout(60):
                await asyncio.gather(task, return_exceptions=True)
        stopper.cancel()


class GatewayChild:
    """The gateway in its own process, driven over stdin/stdout JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, config: Path, log: Path) -> tuple[GatewayChild, dict[str, Any]]:
        with open(log.with_suffix(".stderr"), "wb") as err:  # noqa: ASYNC230 - setup
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.gateway_scale", "--gateway-child", str(config),
                str(log), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # Ctrl-C reaches it through our cleanup, in order
            )  # fmt: skip
        child = cls(proc)
        try:
            first = await child._read()
        except BaseException:
            await child.close()
            raise
        return child, first

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(_CHILD_TIMEOUT_S):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"gateway child exited (status {self.proc.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        return await self._read()

    async def close(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(60):
                await self.proc.wait()
        except (TimeoutError, asyncio.CancelledError):
            self.proc.kill()
            await self.proc.wait()


# ---------------------------------------------------------------- one run


async def _start_lab(root: Path, models: list[str], baud: int) -> Any:
    from gateway.lab import Lab
    from simulators.hub.addresses import first_free_async

    async def start(address: str) -> Any:
        lab = Lab(root / f"lab-{address.rsplit('.', 1)[1]}", address, models,
                  ("--baud", str(baud)), baud, grouped_sims=True)  # fmt: skip
        await lab.__aenter__()
        return lab

    return await first_free_async((f"127.78.0.{n}" for n in range(1, 40)), start)


async def _poll_hub(lab: Any, count: Any, target: int, deadline: float, what: str) -> float:
    """Poll ``count(server)`` until it reaches ``target``; returns time.monotonic() then."""
    while True:
        n = await asyncio.to_thread(lab.hub.call, count)
        if n >= target:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: only {n} of {target} before the deadline")
        await asyncio.sleep(_POLL_S)  # polling a foreign thread's state, bounded by deadline


def _set_desired(lab: Any, targets: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """update_twin for every target from a few threads; returns device id -> time sent."""
    from azure.iot.hub.models import Twin, TwinProperties

    sent: dict[str, float] = {}
    chunks = [targets[i::_SET_WORKERS] for i in range(_SET_WORKERS)]

    def worker(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        registry = lab.registry()
        for device_id, desired in chunk:
            patch = Twin(properties=TwinProperties(desired={"firmware": desired}))
            sent[device_id] = time.time()
            registry.update_twin(device_id, patch, "*")

    with concurrent.futures.ThreadPoolExecutor(_SET_WORKERS) as pool:
        for f in [pool.submit(worker, c) for c in chunks if c]:
            f.result(timeout=600)
    return sent


async def _run_one(n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from gateway.naming import device_id_for

    models = [args.models[i % len(args.models)] for i in range(n)]
    lab = await _start_lab(root, models, args.baud)
    child: GatewayChild | None = None
    try:
        assert lab.hub is not None and lab.images is not None
        text = lab.config_text()
        text = re.sub(r"(?m)^max_concurrent_flashes = .*$",
                      f"max_concurrent_flashes = {args.max_flashes}", text)  # fmt: skip
        text = re.sub(r"(?m)^log_level = .*$", f'log_level = "{args.log_level}"', text)
        config = lab.root / "gateway.toml"
        config.write_text(text)
        releases = {m: lab.release(NEW_VERSION, m, args.size) for m in sorted(set(models))}
        ids = [device_id_for(bytes.fromhex(s.uid), s.model) for s in lab.sims]
        desired = {d: releases[s.model].desired() for d, s in zip(ids, lab.sims, strict=True)}
        deadline = time.monotonic() + args.timeout

        child, first = await GatewayChild.spawn(config, lab.root / "gateway.log")
        idle = first["proc"]
        t0 = time.monotonic()
        await child.ask("start")

        def connected(s: Any) -> int:
            return sum(1 for d in ids if s.hub.is_connected(d))

        def ready(s: Any) -> int:
            count = 0
            for d in ids:
                twin = s.hub.twins.get(d)
                fw = twin.reported.get("firmware") if twin is not None else None
                count += isinstance(fw, dict) and "fwUpdateStatus" in fw
            return count

        t_online = await _poll_hub(lab, connected, n, deadline, "MCUs online")
        t_ready = await _poll_hub(lab, ready, n, deadline, "MCUs reported")
        online_report = await child.ask("report")
        online = online_report["proc"]

        t_set0 = time.monotonic()
        sent = await asyncio.to_thread(_set_desired, lab, list(desired.items()))
        t_set1 = time.monotonic()

        def finished(s: Any) -> int:
            count = 0
            for d in ids:
                twin = s.hub.twins.get(d)
                fw = twin.reported.get("firmware") if twin is not None else None
                if isinstance(fw, dict) and (
                    fw.get("fwUpdateStatus") in ("error", "rolledback")
                    or (fw.get("fwUpdateStatus") == "current"
                        and fw.get("currentFwVersion") == NEW_VERSION)
                ):  # fmt: skip
                    count += 1
            return count

        t_done = await _poll_hub(lab, finished, n, deadline, "MCUs finished")

        def current(s: Any) -> int:
            return sum(
                1
                for d in ids
                if (fw := s.hub.twins[d].reported.get("firmware", {})).get("fwUpdateStatus")
                == "current"
                and fw.get("currentFwVersion") == NEW_VERSION
            )

        n_current = await asyncio.to_thread(lab.hub.call, current)
        after = await child.ask("report")
        sim_cpu_ms = sum(proc_cpu_ms(g.proc.pid) for g in lab.groups if g.proc is not None)
        results: dict[str, dict[str, Any]] = after["agents"]
        to_data = [
            r["first_data_at"] - sent[d]
            for d, r in results.items()
            if d in sent and r.get("first_data_at") is not None
        ]
        to_begin = [r["began_at"] - sent[d] for d, r in results.items() if "began_at" in r]
        flash_s = [r["seconds"] for r in results.values() if "seconds" in r]
        # Link efficiency of each transfer: image bytes/s over the 8N1 byte rate.
        link_eff = [
            r["bytes"] * 10 / args.baud / r["transfer_seconds"]
            for r in results.values()
            if r.get("transfer_seconds") and r.get("resumed_from") == 0
        ]
        downloads = [lab.images.stats(f"{m}-{NEW_VERSION}.mcufw").requests for m in releases]
        return {
            "n": n,
            "models": len(releases),
            "sim_processes": len(lab.groups),
            "idle": idle,
            "online": online,
            "thread_kinds": online_report["threads"],
            "after": after["proc"],
            "t_online": t_online - t0,
            "t_ready": t_ready - t0,
            "t_set": t_set1 - t_set0,
            "to_begin": to_begin,
            "to_data": to_data,
            "flash_s": flash_s,
            "t_all": t_done - t_set0,
            "current": n_current,
            "downloads": downloads,
            "link_eff": link_eff,
            "bytes_flashed": sum(r.get("bytes", 0) for r in results.values()),
            "gateway_cpu_rollout_s": (after["proc"]["cpu_ms"] - online["cpu_ms"]) / 1000,
            "sim_cpu_s": sim_cpu_ms / 1000,
        }
    finally:
        if child is not None:
            await child.close()
        await lab.__aexit__(None, None, None)


# ---------------------------------------------------------------- table


def _rows(r: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, str]]:
    n = r["n"]
    idle, online, after = r["idle"], r["online"], r["after"]

    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f} MiB"

    ms = [x * 1000 for x in r["to_data"]]
    begin_ms = [x * 1000 for x in r["to_begin"]]
    return [
        ("MCUs (models / sim processes)", f"{n} ({r['models']} / {r['sim_processes']})"),
        ("gateway RSS idle (no MCU)", mib(idle["VmRSS"])),
        ("gateway RSS all online", mib(online["VmRSS"])),
        ("  per MCU online", f"{(online['VmRSS'] - idle['VmRSS']) / n:.0f} KiB"),
        ("gateway RSS after rollout (peak)", f"{mib(after['VmRSS'])} ({mib(after['VmHWM'])})"),
        ("  per MCU after rollout", f"{(after['VmRSS'] - idle['VmRSS']) / n:.0f} KiB"),
        ("gateway threads idle / online", f"{idle['Threads']} / {online['Threads']}"),
        ("  per MCU online", f"{(online['Threads'] - idle['Threads']) / n:.2f}"),
        ("gateway threads after rollout", f"{after['Threads']}"),
        ("gateway fds idle / online", f"{idle['fds']} / {online['fds']}"),
        ("time to all online (hub)", f"{r['t_online']:.1f} s"),
        ("time to all twins reported", f"{r['t_ready']:.1f} s"),
        ("desired set (service SDK)", f"{r['t_set']:.1f} s ({n / r['t_set']:.0f} twins/s)"),
        ("desired -> update start p50/p99", f"{percentile(begin_ms, .5):.0f} / "
                                            f"{percentile(begin_ms, .99):.0f} ms"),
        ("desired -> first DATA p50", f"{percentile(ms, 0.5):.0f} ms"),
        ("desired -> first DATA p99", f"{percentile(ms, 0.99):.0f} ms"),
        (f"flash time per MCU p50 ({args.size // 1024} KiB)",
         f"{percentile(r['flash_s'], 0.5):.2f} s"),
        ("total time to all current", f"{r['t_all']:.1f} s"),
        ("MCUs current with new version", f"{r['current']} / {n}"),
        ("downloads per package", ", ".join(str(d) for d in r["downloads"])),
        ("gateway CPU desired -> all current", f"{r['gateway_cpu_rollout_s']:.2f} s"),
        ("  per MB flashed",
         f"{r['gateway_cpu_rollout_s'] / max(1e-9, r['bytes_flashed'] / 1e6):.3f} s"),
        ("simulator CPU (whole life)", f"{r['sim_cpu_s']:.1f} s"),
        ("link efficiency min / p50", f"{min(r['link_eff'], default=0):.3f} / "
                                      f"{percentile(r['link_eff'], 0.5):.3f}"),
    ]  # fmt: skip


def _print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    columns = [_rows(r, args) for r in results]
    keys = [k for k, _ in columns[0]]
    width = max(len(k) for k in keys)
    cells = [[v for _, v in col] for col in columns]
    widths = [max(len(v) for v in col) for col in cells]
    print(f"\ngateway scale: {args.baud} baud, {args.size} B image, "
          f"max_concurrent_flashes={args.max_flashes}")  # fmt: skip
    names = [f"N={r['n']}" for r in results]
    head = "  ".join(f"{name:>{w}}" for name, w in zip(names, widths, strict=True))
    print(f"{'metric':<{width}}  {head}")
    print(f"{'-' * width}  " + "  ".join("-" * w for w in widths))
    for i, key in enumerate(keys):
        row = "  ".join(f"{col[i]:>{w}}" for col, w in zip(cells, widths, strict=True))
        print(f"{key:<{width}}  {row}")


async def _main(args: argparse.Namespace) -> None:
    results = []
    for n in args.mcus:
        print(f"N={n}: starting hub, image server, {n} MCUs, gateway ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"gw-scale-{n}-") as tmp:
            root = Path(args.keep) / f"n{n}" if args.keep else Path(tmp)
            result = await _run_one(n, args, root)
        results.append(result)
        print(f"N={n}: all finished in {result['t_all']:.1f} s", flush=True)
    _print_table(results, args)
    for r in results:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(r["thread_kinds"].items()))
        print(f"N={r['n']} Python threads with all online, by name: {kinds}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--gateway-child":
        asyncio.run(_child_main(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcus", default="32,128,250",
                        type=lambda s: [int(x) for x in s.split(",")])  # fmt: skip
    parser.add_argument("--models", default=",".join(MODELS), type=lambda s: s.split(","))
    parser.add_argument("--size", type=int, default=32 * 1024, help="firmware payload bytes")
    parser.add_argument("--baud", type=int, default=921600)
    parser.add_argument(
        "--max-flashes",
        type=int,
        default=PolicySettings.max_concurrent_flashes,
        help="max_concurrent_flashes (default: the gateway's default)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--timeout", type=float, default=900.0, help="per N, all phases")
    parser.add_argument("--keep", help="keep state and logs under this directory")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

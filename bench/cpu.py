"""Gateway CPU per flashed MB, and how many 921600-baud flashes this machine sustains.

Three measurements (issue 14; results and method in bench/README.md):

1. ``cli``: ``mcu-gateway flash`` of a 64 KiB and a 1 MiB random image against
   ``mcu-gateway sim --pty`` (``bench.flash_throughput.run_one``). The CPU of the
   flash process is read with ``os.wait4``; the CPU per MB *excluding
   interpreter start-up* is the slope between the two sizes, (cpu(1 MiB) -
   cpu(64 KiB)) / (MB difference), which also drops connect, reset and the
   confirm wait, since both runs pay them alike.
2. ``gateway``: ``mcu-gateway run`` (``gateway.service.Gateway`` in a child
   process, ``bench.gateway_scale``) with K virtual MCUs, a desired firmware
   set on every twin: the gateway's CPU from the desired change until every
   twin reports ``current``, per MB flashed. Download, signature check,
   journal, twin reports and the drivers are all in it.
3. ``concurrency``: the same with N MCUs in one grouped simulator process,
   ``max_concurrent_flashes = N``, every MCU flashed at once at 921600 baud; the
   link efficiency of each transfer (image bytes/s over baud/10) must stay
   above 0.9. The simulator's own CPU shares the same two cores.

Each of ``cli`` and ``gateway`` runs ``--runs`` times (default 3) and reports
the median with its spread (lowest-highest), so a reader sees the noise of a
shared machine next to the figure.

    python -m bench.cpu [--parts cli,gateway,concurrency] [--runs 3] [--gateway-mcus 4]
                        [--gateway-size 1M] [--concurrency 16,32,48] [--conc-size 256K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import flash_throughput as ft
from bench import gateway_scale as gs
from bench.stats import percentile, spread

BAUD = 921600
#: Link efficiency every concurrent transfer must keep.
MIN_EFFICIENCY = 0.9


def cli_part(work: Path, runs: int) -> dict[str, Any]:
    """``runs`` flashes of each size; the CPU figures are medians, with their spread."""
    cpu: dict[int, list[float]] = {64 * 1024: [], 1024 * 1024: []}
    eff_xfer, eff_cmd = [], []
    for i in range(runs):
        for size in cpu:
            run = ft.run_one(BAUD, size, 0, work, None, 2.0)
            cpu[size].append(run.cpu_s)
            xfer, cmd = run.efficiency(run.transfer_seconds), run.efficiency(run.wall_s)
            if size == 1024 * 1024:
                eff_xfer.append(xfer)
                eff_cmd.append(cmd)
            print(
                f"  cli run {i + 1}/{runs} {size // 1024:>5} KiB: cpu {run.cpu_s:.2f} s, "
                f"transfer efficiency {xfer:.3f}, whole command {cmd:.3f}",
                flush=True,
            )
    small, big = spread(cpu[64 * 1024]), spread(cpu[1024 * 1024])
    mb = (1024 * 1024 - 64 * 1024) / 1e6
    return {
        "runs": runs,
        "cpu_64k_s": small.median,
        "cpu_64k_spread": [small.low, small.high],
        "cpu_1m_s": big.median,
        "cpu_1m_spread": [big.low, big.high],
        "cpu_per_mb_total": big.median / (1024 * 1024 / 1e6),
        "cpu_per_mb_marginal": (big.median - small.median) / mb,
        "eff_xfer_1m": statistics.median(eff_xfer),
        "eff_cmd_1m": statistics.median(eff_cmd),
    }


def help_part(work: Path, runs: int) -> dict[str, Any]:
    """The CLI's floor: ``mcu-gateway --help`` (interpreter, imports, argument parsing)."""
    times = []
    for _ in range(runs):
        status, cpu, _, out = ft._run_child([*ft._cli(), "--help"], 60, work / "help.out")
        if status != 0:
            raise ft.BenchError(f"mcu-gateway --help exited {status}: {out[-300:]}")
        times.append(cpu)
    s = spread(times)
    print(f"  --help: cpu {s}", flush=True)
    return {"cpu_s": s.median, "cpu_spread": [s.low, s.high], "runs": runs}


def _scale_args(args: argparse.Namespace, n: int, size: int) -> argparse.Namespace:
    return argparse.Namespace(
        models=["vmcu-f4"], size=size, baud=BAUD, max_flashes=n,
        log_level="WARNING", timeout=args.timeout, keep=None,
    )  # fmt: skip


async def gateway_run(args: argparse.Namespace, n: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-cpu-{n}-") as tmp:
        r = await gs._run_one(n, _scale_args(args, n, size), Path(tmp))
    mb = r["bytes_flashed"] / 1e6
    eff = r["link_eff"]
    out = {
        "mcus": n,
        "size": size,
        "current": r["current"],
        "mb_flashed": mb,
        "gateway_cpu_s": r["gateway_cpu_rollout_s"],
        "gateway_cpu_per_mb": r["gateway_cpu_rollout_s"] / mb if mb else float("nan"),
        "sim_cpu_s": r["sim_cpu_s"],
        "eff_min": min(eff, default=0.0),
        "eff_p50": percentile(eff, 0.5),
        "links_measured": len(eff),
        "first_data_p99_s": percentile(r["to_data"], 0.99),
        "t_all_s": r["t_all"],
    }
    print(f"  N={n} x {size // 1024} KiB: gateway cpu {out['gateway_cpu_s']:.2f} s "
          f"({out['gateway_cpu_per_mb']:.3f} s/MB), sim cpu {out['sim_cpu_s']:.1f} s, "
          f"link efficiency min {out['eff_min']:.3f} p50 {out['eff_p50']:.3f} "
          f"({out['links_measured']} links), current {out['current']}/{n}, "
          f"all done in {out['t_all_s']:.1f} s", flush=True)  # fmt: skip
    return out


def _size(text: str) -> int:
    return int(ft.parse_size(text))


async def gateway_runs(args: argparse.Namespace) -> dict[str, Any]:
    """``--runs`` gateway runs; the CPU per MB is their median, with the spread."""
    runs = [await gateway_run(args, args.gateway_mcus, args.gateway_size) for _ in range(args.runs)]
    per_mb = spread([r["gateway_cpu_per_mb"] for r in runs])
    return {**runs[len(runs) // 2], "gateway_cpu_per_mb": per_mb.median,
            "gateway_cpu_per_mb_spread": [per_mb.low, per_mb.high], "runs": len(runs)}  # fmt: skip


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    parts = args.parts
    if "cli" in parts:
        print(f"cli: mcu-gateway flash at 921600 baud, {args.runs} runs", flush=True)
        work = Path(tempfile.mkdtemp(prefix="bench-cpu-cli-"))
        try:
            results["help"] = await asyncio.to_thread(help_part, work, args.runs)
            results["cli"] = await asyncio.to_thread(cli_part, work, args.runs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if "gateway" in parts:
        print(f"gateway: mcu-gateway run, {args.gateway_mcus} MCUs, twin change, "
              f"{args.runs} runs", flush=True)  # fmt: skip
        results["gateway"] = await gateway_runs(args)
    if "concurrency" in parts:
        print("concurrency: N flashes at once, 921600 baud", flush=True)
        results["concurrency"] = [
            await gateway_run(args, n, args.conc_size) for n in args.concurrency
        ]
    _summary(results)
    return results


def _lo_hi(pair: list[float]) -> str:
    return f"{pair[0]:.2f}-{pair[1]:.2f}"


def _summary(results: dict[str, Any]) -> None:
    print()
    if "cli" in results:
        c, h = results["cli"], results["help"]
        print(f"CLI --help: {h['cpu_s']:.2f} CPU-s ({_lo_hi(h['cpu_spread'])}, "
              f"{h['runs']} runs)")  # fmt: skip
        print(f"CLI flash 64 KiB: {c['cpu_64k_s']:.2f} CPU-s ({_lo_hi(c['cpu_64k_spread'])}); "
              f"1 MiB: {c['cpu_1m_s']:.2f} ({_lo_hi(c['cpu_1m_spread'])}), medians of "
              f"{c['runs']} runs")  # fmt: skip
        print(f"CLI flash: {c['cpu_per_mb_marginal']:.3f} CPU-s/MB excluding start-up "
              f"({c['cpu_per_mb_total']:.2f} with it, 1 MiB); transfer efficiency "
              f"{c['eff_xfer_1m']:.3f}")  # fmt: skip
    if "gateway" in results:
        g = results["gateway"]
        print(f"gateway service: {g['gateway_cpu_per_mb']:.3f} CPU-s/MB "
              f"({_lo_hi(g['gateway_cpu_per_mb_spread'])} over {g['runs']} runs; "
              f"{g['mcus']} MCUs x {g['size'] // 1024} KiB from a twin change)")  # fmt: skip
    if "concurrency" in results:
        ok = [r["mcus"] for r in results["concurrency"]
              if r["eff_min"] > MIN_EFFICIENCY and r["current"] == r["mcus"]]  # fmt: skip
        best = max(ok, default=0)
        print(f"concurrent 921600-baud flashes with every link > {MIN_EFFICIENCY}: "
              f"{best if best else 'none of the N tried'} (tried "
              f"{', '.join(str(r['mcus']) for r in results['concurrency'])})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parts", default="cli,gateway,concurrency",
                        type=lambda s: s.split(","))  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="repeat cli and gateway; medians")
    parser.add_argument("--gateway-mcus", type=int, default=4)
    parser.add_argument("--gateway-size", type=_size, default=1024 * 1024)
    parser.add_argument("--concurrency", default="16,32,48",
                        type=lambda s: [int(x) for x in s.split(",")])  # fmt: skip
    parser.add_argument("--conc-size", type=_size, default=256 * 1024)
    parser.add_argument("--timeout", type=float, default=600.0, help="per gateway run")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    try:
        results = asyncio.run(_main(args))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Link efficiency of every bootloader driver on the same paced link and the same image.

For each driver in the registry (or those named with ``--drivers``) and each
baud rate, starts ``mcu-gateway sim --pty --bootloader NAME --baud B`` on a
fresh state directory, opens the driver through ``registry.open_driver`` with
the same rate, identifies the device and installs one seeded random image with
``driver.install``, then prints one row per driver and baud::

    python -m bench.driver_compare [--drivers mcugw,stm32-rom] [--bauds 115200,921600]
                                   [--size 64K] [--repeat N] [--json out.json]

Link efficiency is image bytes/s / (baud/10): the share of an 8N1 byte rate
that carries image bytes (the same yardstick for every protocol, so an 8E1
protocol such as AN3155 can reach at most 10/11 of it). It is given over the
whole install (connect, erase, write, check, activate, boot and outcome) and
over the write step alone (``transfer_seconds``).

A driver is benchmarked as soon as it has a simulator
(:mod:`simulators.registry`, built in or a plug-in's ``mcu_gateway.simulators``
entry point); a driver without one is listed as skipped. The simulator's spec
says how its board is strapped (``sim_args``), which driver options reach it
(``driver_options``) and how a payload becomes the driver's image
(``make_image``, e.g. MCUboot's image format). :data:`SIM_ARGS` adds this
benchmark's own settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.flash_throughput import BenchError, _cli, _read_line
from protocols import registry
from protocols.driver import DriverOptions, DriverSpec, Image
from simulators import registry as simulators
from simulators.registry import SimulatorSpec

BAUDS = (115200, 921600)
SIZE = 64 * 1024

#: This benchmark's own ``sim`` arguments per driver, beyond the simulator spec's.
SIM_ARGS: dict[str, list[str]] = {
    "mcugw": ["--turnaround-ms", "2"],
}


@dataclass(frozen=True)
class Row:
    driver: str
    baud: int
    size: int
    rep: int
    status: str  # "ok", or why there is no figure
    identify_s: float = 0.0
    install_s: float = 0.0  # wall time of driver.install
    transfer_s: float = 0.0
    wire_tx: int = 0
    wire_rx: int = 0
    retransmits: int = 0
    outcome: str = ""

    def efficiency(self, seconds: float) -> float:
        return (self.size / seconds) / (self.baud / 10) if seconds > 0 else 0.0


@contextlib.contextmanager
def running_sim(name: str, baud: int, state: Path, log: Path) -> Iterator[str]:
    """A ``sim --bootloader NAME`` process; yields its pty path."""
    cmd = [*_cli(), "sim", "--pty", "--bootloader", name, "--baud", str(baud)]
    cmd += ["--state", str(state), *_sim(name).sim_args, *SIM_ARGS.get(name, [])]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sink)
    try:
        assert proc.stdout is not None
        try:
            line = _read_line(proc.stdout, 30)
        except BenchError:
            line = ""  # exited or silent: its log says why
        if not line.startswith("PTY "):
            proc.wait(5)
            raise BenchError(f"no simulator: {log.read_text(errors='replace').strip()[-300:]}")
        yield line[4:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _sim(name: str) -> SimulatorSpec:
    try:
        return simulators.get(name)
    except (simulators.UnknownSimulator, ImportError, TypeError) as exc:
        raise BenchError(str(exc)) from exc


async def _install(spec: DriverSpec, port: str, baud: int, image: Image) -> dict[str, Any]:
    options = DriverOptions(baud=baud, extra=_sim(spec.name).driver_options)
    async with registry.open_driver(port, spec, options) as driver:
        t0 = time.monotonic()
        await driver.identify()
        t1 = time.monotonic()
        result = await driver.install(image)
        t2 = time.monotonic()
    return {
        "identify_s": t1 - t0,
        "install_s": t2 - t1,
        "transfer_s": result.transfer_seconds,
        "wire_tx": result.wire_bytes_tx,
        "wire_rx": result.wire_bytes_rx,
        "retransmits": result.retransmits,
        "outcome": result.outcome.value,
    }


def run_one(spec: DriverSpec, baud: int, size: int, rep: int, work: Path) -> Row:
    tag = f"{spec.name}-{baud}-{rep}"
    version = f"2.{rep}.0"
    payload = random.Random(f"{size}/{rep}").randbytes(size)  # same bytes for every driver
    state = work / f"state-{tag}"
    try:
        data = _sim(spec.name).image(payload, version)
        image = Image(data, version, hashlib.sha256(data).hexdigest())
        with running_sim(spec.name, baud, state, work / f"sim-{tag}.log") as port:
            figures = asyncio.run(_install(spec, port, baud, image))
    except BenchError as exc:
        return Row(spec.name, baud, size, rep, f"skipped: {exc}")
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return Row(spec.name, baud, size, rep, "ok", **figures)


def _table(rows: Sequence[Row]) -> str:
    head = ("driver", "baud", "image", "identify s", "install s", "xfer s", "eff install",
            "eff xfer", "tx B/B", "rx B/B", "retx", "outcome")  # fmt: skip
    lines = [head]
    for r in rows:
        if r.status == "ok":
            lines.append((
                r.driver, str(r.baud), f"{r.size // 1024} KiB", f"{r.identify_s:.2f}",
                f"{r.install_s:.2f}", f"{r.transfer_s:.2f}", f"{r.efficiency(r.install_s):.1%}",
                f"{r.efficiency(r.transfer_s):.1%}", f"{r.wire_tx / r.size:.3f}",
                f"{r.wire_rx / r.size:.3f}", str(r.retransmits), r.outcome,
            ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]  # fmt: skip
    out += [f"{r.driver} at {r.baud}: {r.status}" for r in rows if r.status != "ok"]
    return "\n".join(out)


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list of numbers {text!r}") from None


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if mult > 1 else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 64K, 1M, 4096)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value * mult


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.driver_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--drivers", help="comma-separated driver names (default: all registered)")
    p.add_argument("--bauds", type=_csv_ints, default=list(BAUDS), help="default 115200,921600")
    p.add_argument("--size", type=parse_size, default=SIZE, help="image size (default 64K)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    args = p.parse_args(argv)
    available = registry.available()
    names = args.drivers.split(",") if args.drivers else sorted(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        p.error(f"unknown driver(s) {', '.join(unknown)}; registered: {', '.join(available)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="driver-compare-") as tmp:
        for name in names:
            for baud in args.bauds:
                for rep in range(args.repeat):
                    print(f"{name} at {baud} baud, run {rep + 1} ...", file=sys.stderr, flush=True)
                    rows.append(run_one(available[name], baud, args.size, rep, Path(tmp)))
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0 if any(r.status == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

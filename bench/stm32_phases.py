"""Where an install's time goes: the ``stm32-rom`` driver and stm32flash on the simulator's clock.

The paced simulator (as in :mod:`bench.stm32_peers`) is run with its UART
timeline recorded: when each host write reached it and when it answered. One
install per host and repetition is split, on that one clock, into:

* ``connect``: the first byte to the erase command (sync, Get, Get ID; ours
  also the unique id and the version record or its place);
* ``erase``: the first erase command to the first Write Memory;
* ``image``: the first Write Memory to the last read-back block (the same
  commands for both hosts, stop-and-wait);
* ``tail``: what follows (ours: the version record written and read back; Go);
* ``host``: the sum of the host's turnarounds, from each answer of the
  simulator to the host's next bytes (inside the phases above).

Medians of ``--repeat`` interleaved runs. Process start-up is not included
(``bench.stm32_peers`` times whole installs)::

    python -m bench.stm32_phases --model stm32f103 --baud 921600 --size 16K --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stm32_peers import FLASH_BASE, _size
from protocols import registry
from protocols.driver import DriverOptions, Image

#: What the hosts send first in each phase: Erase / Extended Erase, Write Memory.
_ERASE = ("43bc", "44bb")
_WRITE = "31ce"


def _serve(model: str, baud: int, timeline: Path) -> None:
    """Run the simulator on a pty, noting (direction, time, bytes) of every chunk."""
    from simulators.mcu.stm32rom import serve as paced
    from simulators.mcu.stm32rom.chip import MODELS, Chip, Faults

    events: list[tuple[str, float, str]] = []
    on_readable, send = paced.PacedPty._on_readable, paced.PacedPty.send

    def noted_on_readable(self: paced.PacedPty) -> None:
        before = len(self._due)
        on_readable(self)
        if len(self._due) > before:
            events.append(("host", time.perf_counter(), self._due[-1][1].hex()))

    def noted_send(self: paced.PacedPty, data: bytes) -> None:
        events.append(("sim", time.perf_counter(), data.hex()))
        send(self, data)

    paced.PacedPty._on_readable = noted_on_readable  # type: ignore[method-assign]
    paced.PacedPty.send = noted_send  # type: ignore[method-assign,assignment]
    with tempfile.TemporaryDirectory(prefix="stm32-phases-") as state:
        chip = Chip(Path(state), MODELS[model], boot0=True, faults=Faults.parse([]))
        try:
            asyncio.run(paced.serve(chip, baud, None))
        finally:
            timeline.write_text(json.dumps(events))


def phases(events: list[list[Any]]) -> dict[str, float]:
    """Seconds per phase of one install's timeline (see the module docstring)."""
    t0 = events[0][1]
    erase = next(e[1] for e in events if e[0] == "host" and e[2][:4] in _ERASE)
    write = next(e[1] for e in events if e[0] == "host" and e[2].startswith(_WRITE))
    # ACK and 256 bytes: a read-back block (the image is whole blocks, see main()).
    last_block = [e[1] for e in events if e[0] == "sim" and len(e[2]) == 2 * 257][-1]
    host = sum(b[1] - a[1] for a, b in itertools.pairwise(events)
               if a[0] == "sim" and b[0] == "host")  # fmt: skip
    return {
        "connect": erase - t0,
        "erase": write - erase,
        "image": last_block - write,
        "tail": events[-1][1] - last_block,
        "total": events[-1][1] - t0,
        "host": host,
        "turns": sum(1 for e in events if e[0] == "host"),
    }


def _install(tool: str, port: str, baud: int, data: bytes, path: Path) -> None:
    if tool == "stm32flash":
        exe = shutil.which("stm32flash")
        if exe is None:
            raise RuntimeError("stm32flash is not installed")
        cmd = [exe, "-m", "8n1", "-b", str(baud), "-w", str(path), "-v", "-g", FLASH_BASE, port]
        subprocess.run(cmd, capture_output=True, check=True, timeout=600)
        return

    async def ours() -> None:
        image = Image(data, "2.0.0", hashlib.sha256(data).hexdigest())
        spec = registry.get("stm32-rom")
        async with registry.open_driver(port, spec, DriverOptions(baud)) as driver:
            result = await driver.install(image)
        if not result.ok:
            raise RuntimeError(f"install ended {result.outcome}")

    asyncio.run(ours())


def run_one(tool: str, model: str, baud: int, data: bytes, path: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="stm32-phases-") as tmp:
        timeline = Path(tmp) / "timeline.json"
        cmd = [sys.executable, "-m", "bench.stm32_phases", "--serve", model, str(baud),
               str(timeline)]  # fmt: skip
        sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert sim.stdout is not None
            line = sim.stdout.readline().strip()
            if not line.startswith("PTY "):
                raise RuntimeError(f"simulator did not announce a pty: {line!r}")
            _install(tool, line.split(" ", 1)[1], baud, data, path)
        finally:
            sim.terminate()
            sim.wait(timeout=10)
            if sim.stdout is not None:
                sim.stdout.close()
        return phases(json.loads(timeline.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stm32f103")
    parser.add_argument("--baud", type=int, default=921600)
    parser.add_argument("--size", default="16K")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", nargs=3, metavar=("MODEL", "BAUD", "TIMELINE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), Path(args.serve[2]))
        return 0
    registry.get("stm32-rom")
    size = _size(args.size)
    if size % 256:
        parser.error("--size: whole 256-byte blocks, so the last read-back block is found")
    data = random.Random(size).randbytes(size)
    tools = ("mcu-gateway", "stm32flash")
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="stm32-phases-") as tmp:
        path = Path(tmp) / "app.bin"
        path.write_bytes(data)
        for _ in range(args.repeat):
            for tool in tools:
                runs[tool].append(run_one(tool, args.model, args.baud, data, path))
    keys = ("connect", "erase", "image", "tail", "total", "host")
    print(f"{args.model} {args.baud} {args.size}, ms (median of {args.repeat}); turns")
    print("| host | " + " | ".join(keys) + " | turns |")
    print("|------|" + "|".join("---" for _ in keys) + "|---|")
    for tool in tools:
        cells = [f"{statistics.median(r[k] for r in runs[tool]) * 1000:.1f}" for k in keys]
        turns = statistics.median(r["turns"] for r in runs[tool])
        print(f"| {tool} | " + " | ".join(cells) + f" | {turns:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

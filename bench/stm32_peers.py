"""The ``stm32-rom`` driver against stm32flash and stm32loader, on the same paced simulator.

For each model, baud rate and image size, a fresh ``mcu-gateway sim --bootloader
stm32-rom --boot0 high`` (flash timings at their typical values) takes one
install of the same random image three ways, each erasing what the image needs,
writing, reading everything back and starting the app:

* ``mcu-gateway``: ``driver.install()`` in process (connect, erase, write, read
  back, version record written and read back, Go); ``mcu-gateway:erase=mass``
  the same with the driver option ``erase = mass`` (one mass erase, as
  stm32loader's ``-e``);
* ``stm32flash``: ``stm32flash -m 8n1 -b BAUD -w app.bin -v -g 0x08000000 PORT``
  (a process; it erases the pages or sectors the file covers and verifies each
  block after writing it);
* ``stm32loader``: ``-e -w -v -g 0x08000000`` through
  :mod:`simulators.mcu.stm32rom.stm32loader_pty` (a process; mass erase, write,
  read-back). Its region erase (``-e -l``) is no option: stm32loader 0.7.1
  computes page numbers from absolute addresses (F1: "byte must be in
  range(0, 256)") and takes F4 flash as 1 KiB pages.

``8n1`` and ``-P none`` because a pseudo-terminal carries no parity bit; the
simulator paces 11 bits per byte as 8E1 would.

    python -m bench.stm32_peers [--models stm32f103,stm32f407] [--bauds 115200,921600]
                                [--sizes 16K,64K] [--tools mcu-gateway,stm32flash,stm32loader]
                                [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from protocols import registry
from protocols.driver import DriverOptions, Image

TOOLS = ("mcu-gateway", "stm32flash", "mcu-gateway:erase=mass", "stm32loader")
FAMILY = {"stm32f103": "F1", "stm32f407": "F4"}
FLASH_BASE = "0x08000000"


@contextlib.contextmanager
def running_sim(model: str, baud: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="stm32-peers-") as state:
        cmd = [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader",
               "stm32-rom", "--boot0", "high", "--model", model, "--state", state,
               "--baud", str(baud)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("PTY "):
                raise RuntimeError(f"simulator did not announce a pty: {line!r}")
            yield line.split(" ", 1)[1]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


async def _ours(port: str, baud: int, data: bytes, extra: dict[str, str | int | bool]) -> float:
    image = Image(data, "2.0.0", hashlib.sha256(data).hexdigest())
    options = DriverOptions(baud, extra=extra)
    spec = registry.get("stm32-rom")
    t0 = time.monotonic()
    async with registry.open_driver(port, spec, options) as d:
        result = await d.install(image)
    if not result.ok:
        raise RuntimeError(f"install ended {result.outcome}")
    return time.monotonic() - t0


def _process(cmd: list[str]) -> float:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {(done.stdout + done.stderr)[-400:]}")
    return time.monotonic() - t0


def run_one(tool: str, model: str, baud: int, data: bytes, path: Path) -> float:
    with running_sim(model, baud) as port:
        if tool.startswith("mcu-gateway"):
            opts = dict(o.split("=", 1) for o in tool.split(":")[1:])
            return asyncio.run(_ours(port, baud, data, dict(opts)))
        if tool == "stm32flash":
            exe = shutil.which("stm32flash")
            if exe is None:
                raise RuntimeError("stm32flash is not installed")
            return _process([exe, "-m", "8n1", "-b", str(baud), "-w", str(path), "-v",
                             "-g", FLASH_BASE, port])  # fmt: skip
        return _process([sys.executable, "-m", "simulators.mcu.stm32rom.stm32loader_pty",
                         "-p", port, "-b", str(baud), "-f", FAMILY[model], "-P", "none", "-q",
                         "-e", "-w", "-v", "-g", FLASH_BASE, str(path)])  # fmt: skip


def _size(text: str) -> int:
    return int(text.rstrip("kK")) * (1024 if text[-1] in "kK" else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stm32f103,stm32f407")
    parser.add_argument("--bauds", default="115200,921600")
    parser.add_argument("--sizes", default="16K,64K")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median shown)")
    args = parser.parse_args(argv)
    # The gateway imports its driver and pyserial once per process, not per install:
    # import them before the first timed run so it pays no more than the others.
    registry.get("stm32-rom")
    importlib.import_module("serial")
    print("| model | baud | image | host | install s (median) | runs | vs mcu-gateway |")
    print("|-------|------|-------|------|--------------------|------|----------------|")
    with tempfile.TemporaryDirectory(prefix="stm32-peers-") as tmp:
        for model in args.models.split(","):
            for baud in (int(b) for b in args.bauds.split(",")):
                for size_text in args.sizes.split(","):
                    data = random.Random(_size(size_text)).randbytes(_size(size_text))
                    path = Path(tmp) / "app.bin"
                    path.write_bytes(data)
                    tools = args.tools.split(",")
                    runs: dict[str, list[float]] = {t: [] for t in tools}
                    for _ in range(args.repeat):  # interleaved: load changes hit every tool
                        for tool in tools:
                            runs[tool].append(run_one(tool, model, baud, data, path))
                    ours = statistics.median(runs[tools[0]])
                    for tool in tools:
                        med = statistics.median(runs[tool])
                        spread = " ".join(f"{x:.2f}" for x in runs[tool])
                        print(f"| {model} | {baud} | {size_text} | {tool} | {med:.2f} | "
                              f"{spread} | {med / ours:.2f}x |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Link efficiency of the ``mcuboot`` driver (SMP over the serial console) on a paced pty.

Starts ``mcu-gateway sim --pty --bootloader mcuboot --baud B`` per rate, installs
one random MCUboot image (built as ``imgtool sign --pad-header`` lays it out)
with the driver, and prints image bytes/s against the raw 8N1 byte rate
(baud/10): over the transfer alone and over the whole install (connect, upload,
check, test, reset, swap, confirm).

    python -m bench.mcuboot_link [--sizes 64K,1M] [--bauds 115200,921600]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from protocols import registry
from protocols.driver import DriverOptions, Image, InstallResult
from protocols.mcuboot.image import build_image


def _size(text: str) -> int:
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1].upper(), 1)
    return int(text.rstrip("kKmM")) * scale


async def _install(port: str, baud: int, image: Image) -> InstallResult:
    options = DriverOptions(baud=baud, confirm_timeout_s=10.0)
    async with registry.open_driver(port, registry.get("mcuboot"), options) as driver:
        return await driver.install(image)


def run_one(baud: int, size: int) -> InstallResult:
    data = build_image(random.Random(size).randbytes(size), "2.0.0")
    image = Image(data, "2.0.0", hashlib.sha256(data).hexdigest())
    with tempfile.TemporaryDirectory(prefix="mcuboot-bench-") as state:
        cmd = [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader", "mcuboot",
               "--state", str(Path(state)), "--baud", str(baud),
               "--fault", "commands=full"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("PTY "):
                raise RuntimeError(f"simulator did not announce a pty: {line!r}")
            return asyncio.run(_install(line.split(" ", 1)[1], baud, image))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64K", help="image sizes, e.g. 64K,1M")
    parser.add_argument("--bauds", default="115200,921600")
    args = parser.parse_args(argv)
    print(f"{'baud':>8} {'image':>9} {'transfer s':>10} {'eff xfer':>9} {'install s':>9} "
          f"{'eff total':>9} {'tx/image':>8} {'outcome':>10}")  # fmt: skip
    for baud in (int(b) for b in args.bauds.split(",")):
        for size in (_size(s) for s in args.sizes.split(",")):
            r = run_one(baud, size)
            raw = baud / 10
            print(
                f"{baud:>8} {r.bytes:>9} {r.transfer_seconds:>10.2f} "
                f"{r.bytes / r.transfer_seconds / raw:>9.1%} {r.seconds:>9.2f} "
                f"{r.bytes / r.seconds / raw:>9.1%} {r.wire_bytes_tx / r.bytes:>8.2f} "
                f"{r.outcome.value:>10}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

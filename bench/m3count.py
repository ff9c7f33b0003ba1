"""Thumb-2 instructions the C decoders execute, counted by QEMU on a Cortex-M3.

``firmware/bootloader/ports/m3count`` runs ports/host/decfuzz.c (the whole C core with
its decoders) on QEMU's ``mps2-an385`` (Cortex-M3, 8 MiB of RAM, so the slots fit)
under ``-icount shift=0``, where QEMU's virtual clock steps once per guest instruction;
SysTick counts that clock, and a loop of known length calibrates instructions per
tick. Counted: everything inside ``bl_dec_write`` (decoding, back-references and
dictionary reads from the slot, page handling), minus the flash HAL's program and erase
(a RAM array here; on a part, the flash controller's time). The build is the
Cortex-M3's: ``arm-none-eabi-gcc -Os -mthumb -mcpu=cortex-m3``, as the bootloader.

    python -m bench.m3count            # one compressed and one delta stream of the corpus
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from simulators.mcu.native import CORE, DECODERS, INC, SOURCE_DIR

FLAGS = ["-std=c99", "-Os", "-mcpu=cortex-m3", "-mthumb", "-ffunction-sections",
         "-fdata-sections", "-Wall", "-Wextra", "-Werror", *INC]  # fmt: skip
WRAPS = "-Wl,--wrap=bl_dec_write,--wrap=hal_flash_program,--wrap=hal_flash_erase"
#: Frames as bench.c_decoders sends them: 256 stream bytes each.
FRAME = 256
TIMEOUT_S = 600


class CountError(RuntimeError):
    pass


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CountError(f"{' '.join(cmd[:2])} ...: {proc.stderr.strip()[-2000:]}")


def build(out: Path) -> Path:
    """The counting firmware, from the bootloader's sources."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            raise CountError(f"{tool} not found (see tests/setup_env.sh)")
    elf = out / "m3count.elf"
    obj = out / "decfuzz.o"
    _run(["arm-none-eabi-gcc", *FLAGS, *DECODERS, "-Dmain=decfuzz_main", "-c",
          "ports/host/decfuzz.c", "-o", str(obj)], SOURCE_DIR)  # fmt: skip
    _run(["arm-none-eabi-gcc", *FLAGS, *DECODERS, "--specs=rdimon.specs", "-nostartfiles",
          "-Tports/m3count/link.ld", "-Wl,--gc-sections", WRAPS, *CORE,
          "ports/common/sim_app.c", str(obj), "ports/m3count/m3count.c", "-o", str(elf)],
         SOURCE_DIR)  # fmt: skip
    return elf


def count(elf: Path, base: bytes, image: bytes, stream: bytes, is_delta: bool) -> int:
    """Cortex-M3 instructions inside bl_dec_write to decode ``stream`` into ``image``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "base.bin").write_bytes(base)
        frames = [(o, min(FRAME, len(stream) - o)) for o in range(0, len(stream), FRAME)]
        blob = struct.pack("<BI", is_delta, len(image)) + hashlib.sha256(image).digest()
        blob += struct.pack("<I", len(stream)) + stream + struct.pack("<I", len(frames))
        blob += b"".join(struct.pack("<II", o, n) for o, n in frames)
        (work / "streams.bin").write_bytes(blob)
        proc = subprocess.run(
            ["qemu-system-arm", "-M", "mps2-an385", "-nodefaults", "-display", "none",
             "-monitor", "none", "-serial", "null", "-icount", "shift=0,align=off,sleep=off",
             "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
            cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines or lines[0] != "0 0":
        raise CountError(f"decode on the M3 failed (exit {proc.returncode}): {proc.stdout[-500:]}")
    last = lines[-1].split()
    if last[0] != "m3count" or len(last) != 4:
        raise CountError(f"no count in the output: {proc.stdout[-500:]}")
    inside, hal = int(last[1]), int(last[2])
    return inside - hal


def main() -> None:
    from bench.corpus import build_pairs
    from protocols.mcugw.encoding import compress, delta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            elf = build(out)
        except CountError as exc:
            sys.exit(str(exc))
        old, new = build_pairs(out / "corpus", args.functions)["small-change"]
        for mode, enc in (("compressed", compress(new)), ("delta", delta(old, new))):
            n = count(elf, old, new, enc.stream, mode == "delta")
            print(f"{mode}: {n} instructions, {n / (len(new) / 1024):.0f} per KiB of image")


if __name__ == "__main__":
    main()

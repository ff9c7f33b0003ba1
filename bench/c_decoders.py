"""The C stream decoders (firmware/bootloader, docs/protocol.md §17), measured.

* Flash: ``arm-none-eabi-size`` of the protocol core's objects for the Cortex-M3
  (``-Os -mthumb``, the lm3s6965 build's flags), with and without the decoders
  (``-DBL_WITH_COMPRESS=1 -DBL_WITH_DELTA=1``).
* RAM: ``arm-none-eabi-nm -S`` of ``sizeof(bl_dec_t)`` (probabilities or Huffman
  tables, page buffer, block header, state) and ``-fstack-usage`` of the decode
  path (bl_dec_write down to the flash HAL).
* Decode cost: the core with its decoders, built for the Cortex-M3 (``-Os -mthumb``),
  decodes the Cortex-M corpus's streams (bench/corpus.py) on QEMU's mps2-an385 under
  ``-icount``, counting the Thumb-2 instructions executed inside ``bl_dec_write``
  (decoding, slot reads, page handling; not framing, CRC, hashing, nor the flash
  HAL's program and erase): see bench/m3count.py. Measured: the instruction count.
  Assumed: CPI_M3 cycles per instruction on a part (single-cycle ALU ops, 2-cycle
  loads, 2-4-cycle taken branches, flash wait states: ~1.2-1.5), at CLOCK_HZ.

    python -m bench.c_decoders [--json FILE]

Checks (PASS/FAIL, exit 1 on a miss): decoder RAM <= 6 KiB beyond the receive ring,
the bootloader core with decoders < 16 KiB of flash, and decoding keeps up with
921600 baud on a 64 MHz part for compressed and delta streams.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import m3count
from bench.corpus import build_pairs
from bench.stats import report_checks
from protocols.mcugw.encoding import compress, delta
from simulators.mcu.native import CORE, DECODERS, INC, SOURCE_DIR

ARM = ["arm-none-eabi-gcc", "-std=c99", "-Os", "-mcpu=cortex-m3", "-mthumb",
       "-ffunction-sections", "-fdata-sections", *INC]  # fmt: skip
#: vmcu-l0's buffers (the smallest part, the Makefile's default MODEL).
MODEL_DEFS = ["-DBL_MAX_DATA_MAX=256u", "-DBL_WINDOW_MAX=1024u", "-DBL_WRITE_MAX=4u",
              "-DBL_WRITE_MIN=4u"]  # fmt: skip
CPI_M3 = 1.5  # assumed Cortex-M3 cycles per Thumb-2 instruction (wait states included)
#: vmcu-f4's flash per KiB of image: a 4 KiB sector erased in 25 ms, 256 B pages in 1 ms.
FLASH_US_PER_KIB = 25_000 / 4 + 4 * 1_000
CLOCK_HZ = 64e6
FAST_BAUD = 921600
RAM_BUDGET = 6 * 1024
FLASH_BUDGET = 16 * 1024
DEC_FILES = ("src/bl_dec.c", "src/bl_dec_lzma.c", "src/bl_dec_inflate.c")


def _run(cmd: list[str], **kw: object) -> str:
    proc = subprocess.run(cmd, cwd=SOURCE_DIR, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ...: {proc.stderr.strip()[:2000]}")
    return str(proc.stdout)


def core_flash(out: Path, with_dec: bool) -> dict[str, int]:
    """text + data bytes of each core object on the Cortex-M3."""
    sizes = {}
    for src in CORE:
        obj = out / (Path(src).stem + (".dec.o" if with_dec else ".o"))
        flags = [*ARM, *MODEL_DEFS, *(DECODERS if with_dec else ()), "-fstack-usage"]
        _run([*flags, "-c", src, "-o", str(obj)])
        line = _run(["arm-none-eabi-size", str(obj)]).splitlines()[1].split()
        sizes[Path(src).stem] = int(line[0]) + int(line[1])
    return sizes


def stack_usage(out: Path) -> dict[str, int]:
    """Function -> bytes of stack, from the -fstack-usage files of the decoder build."""
    frames = {}
    for su in out.glob("*.dec.su"):
        for line in su.read_text().splitlines():
            where, size, _kind = line.split("\t")
            frames[where.rsplit(":", 1)[-1]] = int(size)
    return frames


def dec_ram(out: Path) -> int:
    probe = out / "probe.c"
    probe.write_text('#include "bl.h"\nchar bl_dec_probe[sizeof(bl_dec_t)];\n')
    obj = out / "probe.o"
    _run([*ARM, *MODEL_DEFS, *DECODERS, "-c", str(probe), "-o", str(obj)])
    for line in _run(["arm-none-eabi-nm", "-S", str(obj)]).splitlines():
        if line.endswith("bl_dec_probe"):
            return int(line.split()[1], 16)
    raise SystemExit("probe symbol missing")


def decode_cost(elf: Path, base: bytes, image: bytes, stream: bytes, is_delta: bool) -> int:
    """Cortex-M3 instructions inside bl_dec_write to decode ``stream`` (bench.m3count)."""
    try:
        return m3count.count(elf, base, image, stream, is_delta)
    except m3count.CountError as exc:
        sys.exit(str(exc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--functions", type=int, default=300)
    args = ap.parse_args()
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (see .ci/run)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        plain, dec = core_flash(out, False), core_flash(out, True)
        frames = stack_usage(out)
        ram = dec_ram(out)
        try:
            elf = m3count.build(out)
        except m3count.CountError as exc:
            sys.exit(str(exc))
        pairs = build_pairs(out / "corpus", args.functions)
        rows = []
        for name, (old, new) in pairs.items():
            encodings = (
                ("compressed", compress(new)),
                ("compressed, THUMB", compress(new, thumb=True)),
                ("delta", delta(old, new)),
            )
            for mode, enc in encodings:
                if mode.startswith("compressed") and name not in ("small-change", "cflags"):
                    continue  # LZMA's cost is per output byte: the best and worst ratios
                instr = decode_cost(elf, old, new, enc.stream, mode == "delta")
                per_kib = instr / (len(new) / 1024)
                cycles = per_kib * CPI_M3
                # Output bytes per second the link feeds at 921600: stream rate x ratio.
                out_kib_s = FAST_BAUD / 10 * len(new) / len(enc.stream) / 1024
                rows.append(
                    {
                        "pair": name,
                        "mode": mode,
                        "image": len(new),
                        "stream": len(enc.stream),
                        "instr_per_kib": round(per_kib),
                        "m3_cycles_per_kib": round(cycles),
                        "us_per_kib_64mhz": round(cycles / CLOCK_HZ * 1e6, 1),
                        "cpu_share_at_921600": round(cycles * out_kib_s / CLOCK_HZ, 3),
                    }
                )
    chain = ("bl_dec_write", "bl_lzma_run", "bl_inflate_run", "bl_dec_put", "bl_dec_back",
             "bl_image_write", "bl_dec_copy")  # fmt: skip
    stack = {f: frames.get(f, 0) for f in chain}
    # Deepest decode path: bl_dec_write -> codec -> copy -> put -> bl_image_write.
    deepest = stack["bl_dec_write"] + max(stack["bl_lzma_run"], stack["bl_inflate_run"])
    deepest += stack["bl_dec_copy"] + max(stack["bl_dec_put"], stack["bl_dec_back"])
    deepest += stack["bl_image_write"]
    flash_plain, flash_dec = sum(plain.values()), sum(dec.values())
    print("Cortex-M3 core flash (text+data, -Os), bytes:")
    for f in dec:
        print(f"  {f:16} {plain[f]:6} {dec[f]:6}")
    print(f"  {'total':16} {flash_plain:6} {flash_dec:6}  (+{flash_dec - flash_plain})")
    print(f"decoder state sizeof(bl_dec_t): {ram} B; decode-path stack {deepest} B {stack}")
    print(
        "| pair | mode | image B | stream B | M3 instr/KiB | M3 cycles/KiB | µs/KiB @64 MHz "
        "| CPU share at 921600 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['pair']} | {r['mode']} | {r['image']} | {r['stream']} | {r['instr_per_kib']} "
            f"| {r['m3_cycles_per_kib']} | {r['us_per_kib_64mhz']} "
            f"| {r['cpu_share_at_921600']:.0%} |"
        )
    checks = [
        ("decoder RAM (state + decode-path stack) <= 6 KiB", ram + deepest <= RAM_BUDGET,
         f"{ram + deepest} B"),
        ("bootloader core with decoders < 16 KiB flash", flash_dec < FLASH_BUDGET,
         f"{flash_dec} B"),
        ("LZMA decoding keeps up with 921600 at 64 MHz",
         all(r["cpu_share_at_921600"] < 1 for r in rows if r["mode"] != "delta"),
         f"{max(r['cpu_share_at_921600'] for r in rows if r['mode'] != 'delta'):.0%} "
         "of the CPU (worst)"),
        # A delta carries up to 60x its bytes in image: there the flash, not the link or
        # the decoder, sets the pace; the decoder must stay below the flash's time.
        ("delta decoding faster than the flash programs (vmcu-f4)",
         all(r["us_per_kib_64mhz"] < FLASH_US_PER_KIB for r in rows if r["mode"] == "delta"),
         f"worst {max(r['us_per_kib_64mhz'] for r in rows if r['mode'] == 'delta')} µs/KiB "
         f"vs {FLASH_US_PER_KIB:g} µs/KiB of flash work"),
    ]  # fmt: skip
    ok = report_checks(checks)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "flash": {"plain": plain, "decoders": dec},
                    "dec_ram": ram,
                    "stack": stack,
                    "rows": rows,
                },
                indent=1,
            )
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

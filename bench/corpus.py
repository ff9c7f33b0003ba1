"""Realistic Cortex-M firmware for the encoding benchmarks, built here from our own sources.

Random bytes do not compress and synthetic images compress too well, so the
benchmarks use real Thumb-2 machine code: an application and a "sensor
library" of our own (generated C, deterministic from a seed) linked against
newlib's libc and libm (BSD-licensed, Debian ``libnewlib-arm-none-eabi``) with
``arm-none-eabi-gcc``. The binaries are not kept: build them with

    python -m bench.corpus OUTDIR [--functions N]

Each pair is (old, new) the way releases really differ:

* ``small-change``: one function's body edited;
* ``constant``: a version string and a calibration constant changed;
* ``lib-upgrade``: the sensor library v1 -> v2 (a fifth of its functions
  rewritten, new ones inserted in the middle, so everything after them moves);
* ``cflags``: the same sources at ``-Os`` then ``-O2``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CC = "arm-none-eabi-gcc"
OBJCOPY = "arm-none-eabi-objcopy"
CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-ffunction-sections", "-fdata-sections", "-g0"]
LDFLAGS = ["--specs=nosys.specs", "-Wl,--gc-sections", "-lm"]

_OPS = [
    "acc = acc * {k} + x[i];",
    "acc ^= (x[i] << {s}) | (x[i] >> (32 - {s}));",
    "acc += (int32_t)(x[i] * {k}) >> {s};",
    "if (x[i] > {k}) acc -= x[i] / {d}; else acc += {k};",
    "acc = (acc >> 1) + tbl_{t}[(x[i] + {k}) & 15];",
    "f += (float)x[i] * {fk}f; acc += (int32_t)f;",
    "acc += crc_step(acc, (uint8_t)x[i]);",
    "y[i] = (int32_t)(sqrtf((float)(x[i] & 0xffff)) * {fk}f);",
    "acc += (int32_t)(sinf((float)x[i] * {fk}f) * {k}.0f);",
    "switch (x[i] & 3) {{ case 0: acc += {k}; break; case 1: acc -= {s}; break;"
    " case 2: acc ^= {d}; break; default: acc = ~acc; }}",
]


@dataclass(frozen=True)
class Variant:
    lib_version: int = 1
    edited_function: int | None = None  # small-change: this function gets one more op
    version_string: str = "sensor-app 1.0.0"
    calibration: int = 1337
    opt: str = "-Os"


def _function(rng: random.Random, name: str, extra: bool) -> str:
    body = []
    for _ in range(rng.randint(3, 9)):
        op = rng.choice(_OPS).format(
            k=rng.randint(3, 999),
            s=rng.randint(1, 31),
            d=rng.randint(2, 97),
            t=rng.randint(0, 7),
            fk=f"{rng.uniform(0.01, 9.9):.4f}",
        )
        body.append(f"        {op}")
    if extra:
        body.append("        acc += (acc >> 7) ^ 0x5a5a;")
    ops = "\n".join(body)
    return (
        f"int32_t {name}(const int32_t *x, int32_t *y, int n) {{\n"
        f"    int32_t acc = {rng.randint(0, 9999)}; float f = 0.0f;\n"
        f"    for (int i = 0; i < n; i++) {{\n{ops}\n        y[i] = acc;\n    }}\n"
        f"    return acc + (int32_t)f;\n}}\n"
    )


def library_source(version: int, functions: int) -> str:
    """The sensor library; v2 rewrites every fifth function and inserts new ones."""
    out = ["#include <stdint.h>\n#include <math.h>\n"]
    for t in range(8):
        values = ", ".join(str((t * 37 + j * 11) % 251) for j in range(16))
        out.append(f"const int32_t tbl_{t}[16] = {{{values}}};\n")
    out.append(
        "int32_t crc_step(int32_t c, uint8_t b) {\n"
        "    c ^= b; for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320 & -(c & 1));\n"
        "    return c;\n}\n"
    )
    for i in range(functions):
        seed = i if version == 1 or i % 5 else 100_000 + i
        out.append(_function(random.Random(seed), f"lib_fn_{i}", extra=False))
        if version >= 2 and i == functions // 2:
            for j in range(max(2, functions // 20)):
                out.append(_function(random.Random(200_000 + j), f"lib_new_{j}", extra=False))
    return "".join(out)


def app_source(v: Variant, functions: int) -> str:
    out = [
        "#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
        "#include <math.h>\n",
        f'const char VERSION[] = "{v.version_string}";\n',
        f"volatile int32_t calibration = {v.calibration};\n",
        "int32_t crc_step(int32_t c, uint8_t b);\n",
        "".join(f"extern const int32_t tbl_{t}[16];\n" for t in range(8)),
    ]
    lib_count = functions + (max(2, functions // 20) if v.lib_version >= 2 else 0)
    for i in range(functions):
        out.append(f"int32_t lib_fn_{i}(const int32_t *x, int32_t *y, int n);\n")
    if v.lib_version >= 2:
        for j in range(max(2, functions // 20)):
            out.append(f"int32_t lib_new_{j}(const int32_t *x, int32_t *y, int n);\n")
    app_fns = max(4, functions // 4)
    for i in range(app_fns):
        out.append(_function(random.Random(500_000 + i), f"app_fn_{i}", i == v.edited_function))
    calls = [f"lib_fn_{i}" for i in range(functions)] + [f"app_fn_{i}" for i in range(app_fns)]
    if v.lib_version >= 2:
        calls += [f"lib_new_{j}" for j in range(lib_count - functions)]
    table = ", ".join(calls)
    out.append(
        "typedef int32_t (*fn_t)(const int32_t *, int32_t *, int);\n"
        f"static fn_t const TABLE[] = {{{table}}};\n"
        "static int32_t buf_in[64], buf_out[64];\n"
        "int main(void) {\n"
        "    char line[96]; double d; int32_t total = calibration;\n"
        "    for (;;) {\n"
        "        if (!fgets(line, sizeof line, stdin)) break;\n"
        '        if (sscanf(line, "%lf", &d) == 1) total += (int32_t)(d * 1000.0);\n'
        "        for (unsigned k = 0; k < sizeof TABLE / sizeof TABLE[0]; k++)\n"
        "            total += TABLE[k](buf_in, buf_out, 64);\n"
        '        printf("%s total=%ld avg=%.3f\\n", VERSION, (long)total, total / 3.0);\n'
        "        qsort(buf_out, 64, sizeof buf_out[0],\n"
        "              (int (*)(const void *, const void *))strcmp);\n"
        "    }\n    return (int)total;\n}\n"
    )
    return "".join(out)


def build(v: Variant, functions: int, out: Path) -> bytes:
    """Compile and link one variant; return the flat binary (what a slot holds)."""
    if shutil.which(CC) is None:
        raise SystemExit(
            f"{CC} not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
        )
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "lib.c").write_text(library_source(v.lib_version, functions))
        (t / "app.c").write_text(app_source(v, functions))
        elf = t / "fw.elf"
        cmd = [CC, *CFLAGS, v.opt, str(t / "app.c"), str(t / "lib.c"), "-o", str(elf), *LDFLAGS]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"{CC} failed:\n{res.stderr[-2000:]}")
        subprocess.run([OBJCOPY, "-O", "binary", str(elf), str(out)], check=True)
    return out.read_bytes()


BASE = Variant()
PAIRS: dict[str, tuple[Variant, Variant]] = {
    "small-change": (BASE, Variant(edited_function=3)),
    "constant": (BASE, Variant(version_string="sensor-app 1.0.1", calibration=1338)),
    "lib-upgrade": (BASE, Variant(lib_version=2, version_string="sensor-app 1.1.0")),
    "cflags": (BASE, Variant(opt="-O2")),
}


def build_pairs(outdir: Path, functions: int = 300) -> dict[str, tuple[bytes, bytes]]:
    outdir.mkdir(parents=True, exist_ok=True)
    cache: dict[Variant, bytes] = {}
    pairs = {}
    for name, (old, new) in PAIRS.items():
        for v in (old, new):
            if v not in cache:
                cache[v] = build(
                    v, functions, outdir / f"{name}-{'old' if v is old else 'new'}.bin"
                )
        pairs[name] = (cache[old], cache[new])
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--functions", type=int, default=300, help="library size (300: ~100 KiB)")
    args = ap.parse_args()
    for name, (old, new) in build_pairs(args.outdir, args.functions).items():
        print(f"{name:14} old {len(old):8} B  new {len(new):8} B")


if __name__ == "__main__":
    main()

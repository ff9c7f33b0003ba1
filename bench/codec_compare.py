"""Why LZMA blocks for compression and deflate blocks for deltas: the measurement.

Compares, on the Cortex-M corpus (bench/corpus.py), the codecs an MCU could
decode with at most 6 KiB of RAM, and a delta library, against what
``protocols.mcugw.encoding`` ships:

* heatshrink (``heatshrink2``, window 2^10 or 2^8, the embedded favourite);
* deflate over the whole image (``zlib``, level 9) and in our 4 KiB blocks
  whose dictionary is the already-written image;
* LZMA (lc=0, lp=0, pb=0) over the whole image and in our 64 KiB blocks;
* for each pair, detools' sequential bsdiff patch (heatshrink- and
  LZMA-compressed) beside our deflate-block delta.

    pip install heatshrink2 detools     # the optional ``bench`` extra
    python -m bench.codec_compare [--functions 300]

``--lzma-params`` (standard library only) measures instead what LZMA's
parameters and the ARM-Thumb branch filter (``Codec.LZMA_THUMB``) give in our
64 KiB blocks, against the RAM of the decoder's probability model (u16 each:
1775 at lc=lp=pb=0, plus 768 per literal context beyond the first, plus 56 per
position state beyond the first).
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
import tempfile
import time
import zlib
from pathlib import Path

from bench.corpus import build_pairs
from protocols.mcugw.encoding import (
    BLOCK_SIZE,
    LZMA_BLOCK_SIZE,
    LZMA_FILTERS,
    WINDOW,
    compress,
    delta,
)

#: (lc, lp, pb, ARM-Thumb filter) settings compared by --lzma-params.
PARAMS = [(0, 0, 0, False), (0, 0, 1, False), (0, 1, 1, False), (1, 0, 0, False),
          (0, 0, 0, True), (0, 0, 1, True), (0, 1, 1, True), (1, 1, 1, True),
          (3, 0, 2, True)]  # fmt: skip


def _lzma_blocks(image: bytes, lc: int, lp: int, pb: int, thumb: bool) -> int:
    total = 0
    for off in range(0, len(image), LZMA_BLOCK_SIZE):
        lz = {**LZMA_FILTERS[0], "lc": lc, "lp": lp, "pb": pb}
        chain = [{"id": lzma.FILTER_ARMTHUMB, "start_offset": off}] if thumb else []
        chunk = image[off : off + LZMA_BLOCK_SIZE]
        total += len(lzma.compress(chunk, format=lzma.FORMAT_RAW, filters=[*chain, lz])) + 20
    return total


def lzma_params(images: dict[str, bytes]) -> None:
    names = list(images)
    print("| lc lp pb | Thumb filter | model RAM B | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for lc, lp, pb, thumb in PARAMS:
        probs = 1775 + 768 * ((1 << (lc + lp)) - 1) + 56 * ((1 << pb) - 1)
        cells = [
            f"{len(img) / _lzma_blocks(img, lc, lp, pb, thumb):.3f}x" for img in images.values()
        ]
        print(f"| {lc} {lp} {pb} | {'yes' if thumb else 'no'} | {2 * probs} | "
              + " | ".join(cells) + " |")  # fmt: skip


def _deflate_blocks(image: bytes) -> int:
    total = 0
    for off in range(0, len(image), BLOCK_SIZE):
        zdict = image[max(0, off - (WINDOW - BLOCK_SIZE)) : off]
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict or b"\0")
        total += len(c.compress(image[off : off + BLOCK_SIZE]) + c.flush()) + 20
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=300)
    ap.add_argument("--lzma-params", action="store_true", help="LZMA settings and Thumb filter")
    args = ap.parse_args(argv)
    if args.lzma_params:
        with tempfile.TemporaryDirectory() as tmp:
            pairs = build_pairs(Path(tmp), args.functions)
        lzma_params({f"{name} new": new for name, (_, new) in pairs.items()})
        return 0
    try:
        import detools
        import heatshrink2
    except ImportError:
        print("needs heatshrink2 and detools: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pairs = build_pairs(Path(tmp), args.functions)
    images = {f"{name} new": new for name, (_, new) in pairs.items()}
    print("| image | bytes | heatshrink w10 | heatshrink w8 | deflate whole | deflate 4K blocks "
          "| LZMA whole | LZMA 64K blocks (ours) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, img in images.items():
        n = len(img)
        cells = [
            n / len(heatshrink2.compress(img, window_sz2=10, lookahead_sz2=4)),
            n / len(heatshrink2.compress(img, window_sz2=8, lookahead_sz2=4)),
            n / len(zlib.compress(img, 9)),
            n / _deflate_blocks(img),
            n / len(lzma.compress(img, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)),
            compress(img).ratio,
        ]
        print(f"| {label} | {n} | " + " | ".join(f"{c:.2f}x" for c in cells) + " |")
    print()
    print("| pair | image | detools (heatshrink) | detools (lzma) | detools CPU s "
          "| ours (deflate blocks) | ours CPU s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (old, new) in pairs.items():
        sizes = []
        t0 = time.process_time()
        for comp in ("heatshrink", "lzma"):
            out = io.BytesIO()
            detools.create_patch(io.BytesIO(old), io.BytesIO(new), out, compression=comp)
            sizes.append(len(out.getvalue()))
        d_cpu = (time.process_time() - t0) / 2
        t0 = time.process_time()
        ours = len(delta(old, new).stream)
        o_cpu = time.process_time() - t0
        n = len(new)
        print(f"| {name} | {n} | {sizes[0] / n:.1%} | {sizes[1] / n:.1%} | {d_cpu:.2f} "
              f"| {ours / n:.1%} | {o_cpu:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Long mode of the hostile-input fuzz: millions of frames at the MCU, streams at the host.

    python -m bench.fuzz [--frames 1000000] [--streams 200000] [--blocks 20000]
                         [--seeds 1,2,3]

Splits ``--frames`` over every model and seed (a fresh MCU per seed and model),
sends every model ``--blocks`` hostile block streams (§17) per seed, split across
DATA frames, and feeds the host decoder ``--streams`` damaged streams per seed.
A broken rule stops the run with the seed and the frame that broke it.
"""

from __future__ import annotations

import argparse
import sys
import time

from simulators.mcu.fuzz import FuzzFailure, fuzz_block_streams, fuzz_decoder, fuzz_mcu
from simulators.mcu.models import MODELS
from tests.vectors.messages import load_vectors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    p.add_argument("--frames", type=int, default=1_000_000, help="hostile frames in total")
    p.add_argument("--streams", type=int, default=200_000, help="damaged streams per seed")
    p.add_argument("--blocks", type=int, default=20_000, help="block streams per model and seed")
    p.add_argument("--seeds", default="1,2,3")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    per_run = max(1, args.frames // (len(seeds) * len(MODELS)))
    samples = [bytes.fromhex(v["hex"]) for v in load_vectors()]
    print(f"{'target':<14} {'seed':>5} {'inputs':>9} {'answered':>9} {'dropped':>8} {'s':>7}")
    try:
        for seed in seeds:
            for name, model in MODELS.items():
                t0 = time.monotonic()
                r = fuzz_mcu(model, seed, per_run)
                print(
                    f"{name:<14} {seed:>5} {r.frames:>9} {r.answered:>9} {r.dropped:>8} "
                    f"{time.monotonic() - t0:>7.1f}",
                    flush=True,
                )
                t0 = time.monotonic()
                b = fuzz_block_streams(model, seed, args.blocks)
                print(
                    f"{name + ' §17':<14} {seed:>5} {b.streams:>9} {b.frames:>9} "
                    f"{b.streams - b.statuses.get('OK', 0):>8} {time.monotonic() - t0:>7.1f}",
                    flush=True,
                )
            t0 = time.monotonic()
            fed = fuzz_decoder(seed, args.streams, samples)
            print(
                f"{'host decoder':<14} {seed:>5} {args.streams:>9} {fed:>9}B {'':>8} "
                f"{time.monotonic() - t0:>7.1f}",
                flush=True,
            )
    except FuzzFailure as exc:
        print(f"FUZZ FAILURE: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

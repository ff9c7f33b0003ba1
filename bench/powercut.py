"""Long mode of the power-cut check: deeper and wider than the CI test.

    python -m bench.powercut [--depth 4] [--models vmcu-l0,vmcu-f4,vmcu-h7]
                             [--sectors 3] [--samples 2000] [--seed 1] [--exhaustive-depth 2]

For each model: every single cut of a full update, every pair of cuts (or up to
``--exhaustive-depth``), the same op cut ``depth`` times in a row for every op,
and ``--samples`` random sequences ``depth`` cuts deep. Any sequence that
breaks the invariant stops the run and is printed so it can be replayed with
``simulators.mcu.cutcheck.run_sequence``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterator

from simulators.mcu.core import _synthetic_image
from simulators.mcu.cutcheck import (
    InvariantBroken,
    Report,
    Update,
    check,
    exhaustive,
    ops_after,
    repeated,
    sampled,
)
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.models import MODELS, McuModel


def _update(model: McuModel, sectors: int) -> Update:
    return Update(
        image=random.Random(5).randbytes(sectors * model.sector_size - 100),
        version="2.0.0",
        old_sha256=hashlib.sha256(_synthetic_image("1.0.0")).digest(),
        max_data=model.max_data,
        boot_s=model.boot_ms / 1000,
    )


def _row(model: str, mode: str, report: Report, seconds: float) -> None:
    old = report.outcomes.get("old", 0)
    new = report.outcomes.get("new", 0)
    print(
        f"{model:<8} {mode:<22} {report.sequences:>8} {report.cuts:>8} {old:>7} {new:>7} "
        f"{seconds:>8.1f}",
        flush=True,
    )


def _modes(
    make: Callable[[], SimDevice], up: Update, args: argparse.Namespace
) -> Iterator[tuple[str, Iterator[tuple[int, ...]]]]:
    for d in range(1, args.exhaustive_depth + 1):
        yield f"exhaustive depth {d}", exhaustive(make, up, d)
    yield f"same op x{args.depth}", repeated(make, up, args.depth)
    yield f"random depth {args.depth}", sampled(make, up, args.depth, args.samples, args.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.powercut", description=__doc__)
    p.add_argument("--depth", type=int, default=4, help="cuts per sequence (repeated, sampled)")
    p.add_argument("--exhaustive-depth", type=int, default=2, help="every sequence this deep")
    p.add_argument("--samples", type=int, default=2000, help="random sequences per model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--sectors", type=int, default=3, help="image size in sectors")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    print(f"{'model':<8} {'mode':<22} {'seqs':>8} {'cuts':>8} {'old':>7} {'new':>7} {'s':>8}")
    for name in args.models.split(","):
        model = MODELS[name]
        up = _update(model, args.sectors)

        def make(model: McuModel = model) -> SimDevice:
            return SimDevice(model)

        print(f"{name:<8} {'ops in a full update':<22} {ops_after(make, up, ()):>8}")
        for label, sequences in _modes(make, up, args):
            t0 = time.monotonic()
            try:
                report = check(make, up, sequences)
            except InvariantBroken as exc:
                print(f"{name}: {label}: INVARIANT BROKEN: {exc}", file=sys.stderr)
                return 1
            _row(name, label, report, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Long mode of the power-cut check: deeper and wider than the CI test.

    python -m bench.powercut [--depth 4] [--models vmcu-l0,vmcu-f4,vmcu-h7]
                             [--sectors 3] [--samples 2000] [--seed 1] [--exhaustive-depth 2]
                             [--encodings raw,compressed,delta]

For each model and transfer encoding (raw, an LZMA-compressed stream, a delta
against the factory image; §17): every single cut of a full update, every pair of cuts (or up to
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

from protocols.mcugw.encoding import Encoded, compress, delta
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


def _code_like(seed: int, n: int) -> bytes:
    """Compressible bytes: words drawn from a small vocabulary, as machine code is."""
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(400)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


def _update(model: McuModel, sectors: int, encoding: str = "raw") -> Update:
    factory = _synthetic_image("1.0.0")
    size = sectors * model.sector_size - 100
    encoded: Encoded | None = None
    if encoding == "raw":
        image = random.Random(5).randbytes(size)
    elif encoding == "compressed":
        image = _code_like(2, size)
        encoded = compress(image)
    else:  # a delta: the factory image with a small change, plus new code after it
        changed = bytearray(factory)
        changed[3000:3010] = b"0123456789"
        image = bytes(changed) + _code_like(3, max(0, size - len(factory)))
        encoded = delta(factory, image)
    return Update(
        image=image,
        version="2.0.0",
        old_sha256=hashlib.sha256(factory).digest(),
        max_data=model.max_data,
        boot_s=model.boot_ms / 1000,
        encoded=encoded,
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
    p.add_argument("--encodings", default="raw,compressed,delta", help="transfer encodings")
    args = p.parse_args(argv)
    encodings = args.encodings.split(",")
    for enc in encodings:
        if enc not in ("raw", "compressed", "delta"):
            p.error(f"--encodings: {enc!r} is not raw, compressed or delta")
    print(f"{'model':<8} {'mode':<22} {'seqs':>8} {'cuts':>8} {'old':>7} {'new':>7} {'s':>8}")
    for name in args.models.split(","):
        model = MODELS[name]

        def make(model: McuModel = model) -> SimDevice:
            return SimDevice(model)

        for enc in encodings:
            up = _update(model, args.sectors, enc)
            print(f"{name:<8} {enc + ': ops in an update':<22} {ops_after(make, up, ()):>8}")
            for label, sequences in _modes(make, up, args):
                t0 = time.monotonic()
                try:
                    report = check(make, up, sequences)
                except InvariantBroken as exc:
                    print(f"{name}: {enc}: {label}: INVARIANT BROKEN: {exc}", file=sys.stderr)
                    return 1
                _row(name, f"{enc[:5]} {label}", report, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

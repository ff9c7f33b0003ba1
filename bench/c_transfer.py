"""Compressed and delta transfers into the C reference bootloader over a real pty (issue 21).

``bench.encoded_transfer`` measures the Python virtual MCU in-process; this bench
measures the C build the way a user drives it: ``mcu-gateway sim --impl c`` (the
host build of firmware/bootloader, its UART paced at the baud rate, flash erase
and program times modelled) as a separate process on a pty, and the real
``BootloaderSession`` (what ``mcu-gateway flash`` runs) over that pty. ``--impl
python`` runs the same on the Python virtual MCU, for comparison at identical
settings.

    python -m bench.c_transfer [--impl c,python] [--baud 115200] [--modes raw,compressed,delta]
                               [--pairs small-change,...] [--functions 300] [--json FILE]

For every corpus pair (bench/corpus.py) and mode a fresh ``vmcu-f4`` gets the
old image first (unpaced, flash timing off: set-up, not measured), then the
simulator restarts paced at the baud with real flash timing and the new image
is flashed raw, compressed or as a delta against the old one. Printed per row:
the stream bytes (DATA payload), every byte the gateway sent during the whole
command (frames included), the transfer seconds (first DATA sent to the last
DATA acknowledged) and the whole command's seconds (BEGIN to the new app's
confirmation), and the effective rate: image bytes per second ÷ (baud/10),
over the transfer and over the whole command. ``idle`` is the transfer time
the link spent not sending: transfer seconds minus the wire time of the bytes
sent in it (DATA frames; the acknowledgements travel the other way).

Checks (PASS/FAIL, exit status 1 on a miss) on the C build at 115200 (issue 21):
compressed ≥ 1.55 times the link rate over the transfer for every pair; a small
change as a delta ≤ 5 % of the image on the wire; a release ≤ 30 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.corpus import PAIRS, build_pairs
from bench.encoded_transfer import TARGET_RATE, TARGET_RELEASE, TARGET_SMALL
from bench.stats import report_checks
from protocols.mcugw.session import BootloaderSession
from protocols.transport import open_transport
from simulators.mcu import launch

MODEL = "vmcu-f4"
MODES = ("raw", "compressed", "delta")


@dataclass
class Row:
    impl: str
    pair: str
    baud: int
    mode: str
    image: int
    stream: int  # DATA payload bytes (the encoded stream, or the image when raw)
    tx: int  # every byte the gateway sent in the command (frames, BEGIN ... confirm)
    transfer_s: float  # first DATA to the last DATA acknowledged
    flash_s: float  # BEGIN to the confirmed new app

    @property
    def share(self) -> float:
        return self.stream / self.image

    @property
    def rate(self) -> float:
        return self.image / self.transfer_s / (self.baud / 10)

    @property
    def command_rate(self) -> float:
        return self.image / self.flash_s / (self.baud / 10)

    @property
    def idle_s(self) -> float:
        """Transfer time the link did not carry DATA frames (the frames are ~all of ``tx``)."""
        return self.transfer_s - self.tx / (self.baud / 10)


async def _flash(port: str, image: bytes, version: str, *, encode: bool,
                 base: bytes | None) -> tuple[int, int, float, float, str]:  # fmt: skip
    transport = await open_transport(port, 0)
    try:
        session = BootloaderSession(transport, 0)
        async with asyncio.timeout(300):
            r = await session.flash(image, version, encode=encode, base=base)
    finally:
        await transport.close()
    if r.outcome != "confirmed":
        raise SystemExit(f"flash of {version} ended {r.outcome}")
    return r.stream_bytes, r.wire_bytes_tx, r.transfer_seconds, r.seconds, r.encoding


def flash_once(impl: str, state: Path, old: bytes, new: bytes, baud: int, mode: str) -> Row:
    common = ["--impl", impl, "--model", MODEL, "--state", str(state)]
    # Set-up: the old image confirmed in a slot (the base of a delta), quickly.
    child = launch.start([*common, "--baud", "0", "--flash-scale", "0"], stderr=None)
    try:
        asyncio.run(_flash(child.port, old, "1.1.0", encode=True, base=None))
    finally:
        launch.stop(child.proc)
    child = launch.start([*common, "--baud", str(baud), "--flash-scale", "1"], stderr=None)
    try:
        base = old if mode == "delta" else None
        flashed = _flash(child.port, new, "2.0.0", encode=mode != "raw", base=base)
        stream, tx, xfer, total, enc = asyncio.run(flashed)
    finally:
        launch.stop(child.proc)
    if enc != mode:
        raise SystemExit(f"{impl} {mode} flash went out as {enc}")
    return Row(impl, "", baud, mode, len(new), stream, tx, xfer, total)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", default="c", help="c, python or both (c,python)")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--functions", type=int, default=300, help="corpus size (300: ~136 KiB)")
    ap.add_argument("--json", type=Path, help="write every row here")
    args = ap.parse_args(argv)
    impls, modes = args.impl.split(","), args.modes.split(",")
    names = args.pairs.split(",")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building the corpus with {args.functions} library functions ...", flush=True)
        pairs = build_pairs(Path(tmp) / "corpus", args.functions)
        print()
        print("| impl | pair | mode | image B | stream B | stream/image | sent B | transfer s "
              "| idle s | rate (transfer) | command s | rate (command) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for impl in impls:
            for name in names:
                old, new = pairs[name]
                for mode in modes:
                    state = Path(tmp) / f"{impl}-{name}-{mode}"
                    row = flash_once(impl, state, old, new, args.baud, mode)
                    row.pair = name
                    rows.append(row)
                    print(f"| {impl} | {name} | {mode} | {row.image} | {row.stream} | "
                          f"{row.share:.1%} | {row.tx} | {row.transfer_s:.2f} | "
                          f"{row.idle_s:.2f} | {row.rate:.2f}x | {row.flash_s:.2f} | "
                          f"{row.command_rate:.2f}x |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if _targets(rows) else 1


def _targets(rows: list[Row]) -> bool:
    checks = []
    for impl in sorted({r.impl for r in rows}):
        at = [r for r in rows if r.impl == impl and r.baud == 115200]
        comp = [r for r in at if r.mode == "compressed"]
        if comp:
            worst = min(comp, key=lambda r: r.rate)
            checks.append((f"{impl}: compressed over the transfer at 115200 >= {TARGET_RATE}x",
                           worst.rate >= TARGET_RATE,
                           f"{worst.rate:.2f}x (worst pair, {worst.pair}; whole command "
                           f"{worst.command_rate:.2f}x)"))  # fmt: skip
        for pair, target, what in (("small-change", TARGET_SMALL, "small change"),
                                   ("lib-upgrade", TARGET_RELEASE, "release")):  # fmt: skip
            found = [r for r in at if r.mode == "delta" and r.pair == pair]
            if found:
                checks.append((f"{impl}: delta, {what} ({pair}) <= {target:.0%} of the image",
                               found[0].share <= target, f"{found[0].share:.1%}"))  # fmt: skip
    print()
    return report_checks(checks)


if __name__ == "__main__":
    sys.exit(main())

"""`mcu-gateway sim`: run virtual MCUs on pseudo-terminals."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError
from simulators import registry as simulators

_FAULT_HELP = """\
fault specs (repeat --fault):
  corrupt=RATE[:rx|tx|both]  flip a bit in a byte with probability RATE
  drop=RATE[:rx|tx|both]     lose a byte with probability RATE
  seed=N                     RNG seed for corrupt/drop
  delay=MS                   extra turnaround on every answer
  cut-at=N|P%                power cut once N bytes / P% of the image are programmed
  cut-op=N                   power cut at the Nth flash operation (torn write)
  cut-phase=PHASE[:K]        power cut at the Kth flash op of begin|data|verify|
                             activate|boot|confirm|abort
  refuse=OPCODE              answer OPCODE with REFUSED
  mute=OPCODE                never answer OPCODE
  crash-on-boot=VERSION      that app version crashes on boot (exercises rollback)
  hang-on-boot=VERSION       that app version hangs on boot; the watchdog resets it (rollback)
  baud-fail                  SET_BAUD accepted but the new rate never works
A power cut ends the process with exit status 3; restart it on the same --state.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "sim",
        help="run a virtual MCU (bootloader + app) on a pseudo-terminal",
        description="Run virtual MCUs. The first stdout line is 'PTY <path>' (one per MCU).",
        epilog=_FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pty", action="store_true", required=True, help="serve on a new pty")
    p.add_argument("--state", type=Path, help="state directory (flash persists; default: temp)")
    p.add_argument("--model", help="MCU model (vmcu-f4, vmcu-l0, vmcu-h7)")
    p.add_argument("--uid", help="unique id as hex (default: random, then persisted)")
    p.add_argument("--baud", type=int, default=115200, help="link pacing; 0 = unpaced")
    p.add_argument("--app-version", default="1.0.0", help="factory app on blank flash")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC")
    p.add_argument("--protocol-version", type=int, help="emulate another command-set version")
    p.add_argument(
        "--no-decoders",
        action="store_true",
        help="advertise neither COMPRESS, DELTA nor THUMB (a version-1 MCU: raw transfers only;"
        " --impl c/qemu: built without the decoders)",
    )
    p.add_argument("--count", type=int, default=1, help="serve N MCUs from this process")
    p.add_argument(
        "--link",
        type=Path,
        help="also expose the pty as this symlink (with --count N: LINK-000, LINK-001, ...)",
    )
    p.add_argument("--flash-scale", type=float, default=1.0, help="scale flash timings")
    p.add_argument("--turnaround-ms", type=float, help="override the model's turnaround")
    p.add_argument(
        "--bootloader",
        choices=simulators.names(),
        default="mcugw",
        help="which bootloader the virtual MCU runs (default: mcugw, this project's); "
        "stm32-rom and mcuboot models, faults and controls: docs/bootloaders.md",
    )
    p.add_argument(
        "--boot0",
        choices=("high", "low"),
        default="low",
        help="stm32-rom: BOOT0 strap; high starts in the ROM system bootloader",
    )
    p.add_argument(
        "--rdp",
        choices=("0", "1"),
        help="stm32-rom: set readout protection to this level (default: as the state has it)",
    )
    p.add_argument(
        "--impl",
        choices=("python", "c", "qemu"),
        default="python",
        help="python virtual MCU, the C reference bootloader on the host (c), "
        "or its Cortex-M3 build under qemu-system-arm (qemu)",
    )
    p.set_defaults(func=_run)


def _run_other(args: argparse.Namespace) -> int:
    """Another bootloader's simulator, built in or a plug-in's (simulators.registry)."""
    try:
        spec = simulators.get(args.bootloader)
    except (simulators.UnknownSimulator, ImportError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    assert spec.main is not None, "only mcugw is served by the CLI itself"
    try:
        return int(spec.main(args))
    except ValueError as exc:  # simulators report bad options as ValueError
        raise CommandError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import replace

    if args.impl != "python" and args.bootloader != "mcugw":
        raise CommandError(f"--impl {args.impl} runs this project's bootloader (mcugw) only")
    if args.bootloader != "mcugw":
        return _run_other(args)

    from simulators.mcu.device import DeviceSpec, SimConfigError, open_device
    from simulators.mcu.flash import PowerCut
    from simulators.mcu.options import FaultSpecError, parse_faults
    from simulators.mcu.pty import POWER_CUT_EXIT, serve

    if args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.impl != "python":
        from simulators.mcu.native import NativeSimError, exec_native

        try:
            return exec_native(args.impl, vars(args))
        except NativeSimError as exc:
            raise CommandError(str(exc)) from exc
    try:
        options = parse_faults(args.fault)
    except FaultSpecError as exc:
        raise CommandError(str(exc)) from exc
    if args.protocol_version is not None:
        options = replace(options, protocol_version=args.protocol_version)
    if args.no_decoders:
        options = replace(options, decoders=False)
    uid: bytes | None = None
    if args.uid:
        try:
            uid = bytes.fromhex(args.uid)
        except ValueError as exc:
            raise CommandError(f"--uid {args.uid!r} is not hex") from exc
        if not 1 <= len(uid) <= 32:
            raise CommandError("--uid must be 1 to 32 bytes")
    with tempfile.TemporaryDirectory(prefix="mcu-sim-") as tmp:
        root: Path = args.state or Path(tmp)
        cores = []
        try:
            for i in range(args.count):
                state = root if args.count == 1 else root / f"mcu-{i:03d}"
                this_uid = uid if uid is None or i == 0 else uid[:-1] + bytes([(uid[-1] + i) % 256])
                spec = DeviceSpec(
                    state_dir=state,
                    model=args.model,
                    uid=this_uid,
                    app_version=args.app_version or None,
                    flash_scale=args.flash_scale,
                    turnaround_ms=args.turnaround_ms,
                )
                cores.append(open_device(spec, options, args.baud))
        except SimConfigError as exc:
            raise CommandError(str(exc)) from exc
        except PowerCut as exc:
            # The cut hit the cold start's boot decision: same exit as any other cut.
            print(f"sim: {exc} (at power-on)", file=sys.stderr, flush=True)
            for core in cores:
                core.flash.close()
            return POWER_CUT_EXIT

        def announce(line: str) -> None:
            print(line, flush=True)

        links: list[Path] | None = None
        if args.link is not None:
            if args.count == 1:
                links = [args.link]
            else:
                links = [
                    args.link.with_name(f"{args.link.name}-{i:03d}") for i in range(args.count)
                ]
        return asyncio.run(serve(cores, args.baud, announce, links))

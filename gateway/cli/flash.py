"""`mcu-gateway flash`: write a package (or a raw .bin with --version) to one MCU."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError
from gateway.cli.serial_common import run_with_session
from protocols.errors import LocalProtocolError
from protocols.session import DEFAULT_CONFIRM_TIMEOUT_S, BootloaderSession, FlashResult, ProgressFn


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("flash", help="flash a firmware package or raw image into an MCU")
    p.add_argument("file", type=Path, metavar="FILE", help="package, or raw .bin with --version")
    p.add_argument("--port", required=True, help="serial device, socket://HOST:PORT or loop://")
    p.add_argument("--version", help="version of a raw .bin image (semantic version)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--fast-baud", type=int, help="switch to this rate after HELLO (SET_BAUD)")
    p.add_argument("--json", action="store_true", help="end with one JSON result object")
    p.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="PUBKEY",
        help="trusted public key for package signatures (repeatable)",
    )
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned packages")
    p.add_argument("--allow-downgrade", action="store_true")
    p.add_argument("--confirm-timeout", type=float, default=DEFAULT_CONFIRM_TIMEOUT_S)
    p.set_defaults(func=_run)


def _load(args: argparse.Namespace) -> tuple[bytes, bool]:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    from firmware.package import MAGIC

    is_package = data.startswith(MAGIC)
    if not is_package:
        if not args.version:
            raise CommandError(f"{args.file} is not a package; give --version for a raw image")
        import semver

        if not semver.Version.is_valid(args.version):
            raise CommandError(f"--version {args.version!r} is not a semantic version")
    elif args.version:
        raise CommandError("--version is only for raw images; a package carries its version")
    return data, is_package


def _check_package(
    args: argparse.Namespace, data: bytes, session: BootloaderSession
) -> tuple[bytes, str]:
    """Verify the package against the connected MCU before a byte is written."""
    from firmware.compat import TargetInfo
    from firmware.errors import FirmwareError
    from firmware.policy import TrustPolicy, check_package
    from gateway.reported import installed_version

    info = session.device
    assert info is not None
    try:
        policy = TrustPolicy.from_files(args.trust, allow_unsigned=args.allow_unsigned)
    except (OSError, FirmwareError) as exc:
        raise CommandError(f"cannot load trusted keys: {exc}") from exc
    target = TargetInfo(
        compat=info.compat,
        model=info.model,
        installed_version=installed_version(info),
        slot_size=info.geometry.slot_size,
    )
    verdict = check_package(
        data, target=target, policy=policy, allow_downgrade=args.allow_downgrade
    )
    if not verdict.ok or verdict.package is None:
        raise CommandError(f"{args.file}: {verdict.reason.value}: {verdict.message}")
    return verdict.package.payload, verdict.package.manifest.update.version


def _progress_bar(enabled: bool) -> tuple[ProgressFn, Any]:
    if not enabled:
        return (lambda phase, done, total: None), None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task("connecting", total=None)

    def update(phase: str, done: int, total: int) -> None:
        bar.update(task, description=phase, completed=done, total=total)

    return update, bar


def result_dict(r: FlashResult) -> dict[str, Any]:
    d = asdict(r)
    d["seconds"] = round(r.seconds, 3)
    d["transfer_seconds"] = round(r.transfer_seconds, 3)
    return d


def _run(args: argparse.Namespace) -> int:
    data, is_package = _load(args)
    progress, bar = _progress_bar(sys.stdout.isatty() and not args.json)

    async def body(session: BootloaderSession) -> FlashResult:
        await session.connect()
        if args.fast_baud:
            await session.set_baud(args.fast_baud)
        image, version = (data, args.version)
        if is_package:
            image, version = _check_package(args, data, session)
        try:
            return await session.flash(
                image, version, progress=progress, confirm_timeout=args.confirm_timeout
            )
        except LocalProtocolError as exc:
            raise CommandError(f"{args.port}: {exc}") from exc

    try:
        if bar is not None:
            with bar:
                result = run_with_session(args.port, args.baud, body)
        else:
            result = run_with_session(args.port, args.baud, body)
    except CommandError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        raise
    out = result_dict(result)
    if args.json:
        print(json.dumps(out))
    else:
        rate = result.bytes / result.seconds if result.seconds else 0.0
        print(
            f"{result.outcome}: version {result.version} in slot {result.slot}, "
            f"{result.bytes} bytes in {result.seconds:.2f} s ({rate / 1024:.1f} KiB/s), "
            f"resumed from {result.resumed_from}, {result.retransmits} retransmits"
        )
    if result.outcome == "rolled_back":
        print(
            f"mcu-gateway flash: error: {args.port}: the new app did not confirm; "
            f"the MCU rolled back to {result.running_version}",
            file=sys.stderr,
        )
        return 1
    if result.outcome != "confirmed":
        print(
            f"mcu-gateway flash: error: {args.port}: the new app has not confirmed within "
            f"{args.confirm_timeout:g} s",
            file=sys.stderr,
        )
        return 1
    return 0

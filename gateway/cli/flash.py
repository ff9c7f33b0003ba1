"""`mcu-gateway flash`: write a package (or a raw .bin with --version) to one MCU."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import (
    CommandError,
    add_trust_args,
    check_trust_files,
    fast_baud_rate,
    positive_float,
)
from gateway.cli.serial_common import add_driver_args, driver_options, run_with_driver
from protocols.driver import (
    Capability,
    DeltaPayload,
    DeviceFacts,
    Driver,
    DriverSpec,
    Image,
    InstallResult,
    Outcome,
    Progress,
    ProgressFn,
    no_progress,
)

DEFAULT_CONFIRM_TIMEOUT_S = 10.0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("flash", help="flash a firmware package or raw image into an MCU")
    p.add_argument("file", type=Path, metavar="FILE", help="package, or raw .bin with --version")
    add_driver_args(p)
    p.add_argument(
        "--version",
        help="version of a raw .bin image (semantic version; an MCUboot image's header has it)",
    )
    p.add_argument(
        "--fast-baud",
        type=fast_baud_rate,
        default=0,
        metavar="N",
        help="switch to this standard rate for the transfer (0: stay at --baud); refused "
        "if the MCU's bootloader cannot change its rate",
    )
    p.add_argument("--json", action="store_true", help="end with one JSON result object")
    add_trust_args(p, "trusted public key for package signatures (repeatable)")
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned packages")
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="flash a version older than the installed one (package or raw image)",
    )
    p.add_argument(
        "--confirm-timeout",
        type=positive_float,
        default=DEFAULT_CONFIRM_TIMEOUT_S,
        metavar="S",
        help="seconds to wait for the new app to confirm itself",
    )
    p.set_defaults(func=_run)


def _load(args: argparse.Namespace) -> tuple[bytes, bool]:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    from firmware.magic import MAGIC

    if data.startswith(MAGIC):
        if args.version:
            raise CommandError("--version is only for raw images; a package carries its version")
        return data, True
    header = _mcuboot_version(data)
    if header is not None:
        if args.version and args.version != header:
            raise CommandError(
                f"--version {args.version} disagrees with {args.file}'s MCUboot header ({header})"
            )
        args.version = header
    if not args.version:
        raise CommandError(f"{args.file} is not a package; give --version for a raw image")
    import semver

    if header is None and not semver.Version.is_valid(args.version):
        raise CommandError(f"--version {args.version!r} is not a semantic version")
    return data, False


def _mcuboot_version(data: bytes) -> str | None:
    """The version in an MCUboot image header, or None if ``data`` is not an MCUboot image."""
    from protocols.mcuboot.image import IMAGE_MAGIC, parse_image

    if len(data) < 4 or int.from_bytes(data[:4], "little") != IMAGE_MAGIC:
        return None
    try:
        return parse_image(data, check_hash=False).version
    except ValueError as exc:
        raise CommandError(f"MCUboot image: {exc}") from exc


def _check_raw(args: argparse.Namespace, facts: DeviceFacts) -> None:
    """The policy a package gets, for a raw image: no silent downgrade, no ignored option."""
    import semver

    installed = facts.installed_version
    if installed and not args.allow_downgrade:
        try:
            older = semver.Version.parse(args.version) < semver.Version.parse(installed)
        except ValueError:
            older = False  # not both semantic versions (an MCUboot build number): no order
        if older:
            raise CommandError(
                f"{args.file}: DOWNGRADE: version {args.version} is older than installed "
                f"{installed}; pass --allow-downgrade to flash it anyway"
            )


def _check_fast_baud(args: argparse.Namespace, facts: DeviceFacts) -> None:
    from protocols.driver import Capability

    if args.fast_baud and Capability.SET_BAUD not in facts.capabilities:
        raise CommandError(
            f"--fast-baud {args.fast_baud}: the {facts.driver} bootloader on {args.port} "
            "cannot change its rate"
        )


def _no_delta_reason(spec: DriverSpec, facts: DeviceFacts) -> str:
    """Why this MCU cannot take a delta, or "" when it can (it advertises DELTA)."""
    if Capability.DELTA in facts.capabilities:
        return ""
    if spec.name != "mcugw":
        return f"the {spec.name} bootloader takes full images only"
    return (
        f"the MCU ({facts.model}, bootloader {facts.bootloader_version or 'unknown'}) does not "
        "advertise DELTA (docs/protocol.md §17): give it the full image"
    )


def _check_package(
    args: argparse.Namespace, data: bytes, spec: DriverSpec, facts: DeviceFacts
) -> Image:
    """Verify the package against the connected MCU before a byte is written; returns what
    to install: the payload as an image, or a published delta for an MCU with DELTA."""
    from firmware.compat import TargetInfo
    from firmware.errors import FirmwareError
    from firmware.policy import TrustPolicy, check_package
    from gateway.update import delta_base_sha256

    if not args.trust and not args.allow_unsigned:
        raise CommandError(
            f"{args.file}: no --trust key given: name the public key the package is signed "
            "with (--trust PUBKEY), or --allow-unsigned for an unsigned package"
        )
    check_trust_files(args.trust)
    try:
        policy = TrustPolicy.from_files(args.trust, allow_unsigned=args.allow_unsigned)
    except (OSError, FirmwareError) as exc:
        raise CommandError(f"cannot load trusted keys: {exc}") from exc
    target = TargetInfo(
        compat=facts.compat,
        model=facts.model,
        installed_version=facts.installed_version,
        slot_size=facts.capacity,
        delta_base_sha256=delta_base_sha256(facts),
    )
    why = _no_delta_reason(spec, facts)
    verdict = check_package(
        data, target=target, policy=policy, allow_downgrade=args.allow_downgrade,
        allow_delta=not why, no_delta_reason=why,
    )  # fmt: skip
    if not verdict.ok or verdict.package is None:
        raise CommandError(f"{args.file}: {verdict.reason.value}: {verdict.message}")
    m = verdict.package.manifest
    payload = verdict.package.payload
    if m.is_delta:
        assert m.delta_target_sha256 is not None and m.delta_base_sha256 is not None
        delta = DeltaPayload(payload, m.image_size, m.delta_base_sha256)
        return Image(b"", m.update.version, m.delta_target_sha256, delta=delta,
                     target=m.target_image)  # fmt: skip
    digest = hashlib.sha256(payload).hexdigest()
    return Image(payload, m.update.version, digest, target=m.target_image)


def _progress_bar(enabled: bool) -> tuple[ProgressFn, Any]:
    if not enabled:
        return no_progress, None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task("connecting", total=None)

    def update(event: Progress) -> None:
        bar.update(task, description=event.step.label, completed=event.done, total=event.total)

    return update, bar


def result_dict(r: InstallResult) -> dict[str, Any]:
    """The same keys for every driver; protocol specifics sit under ``details``."""
    return {
        "ok": r.ok,
        "outcome": r.outcome.value,
        "driver": r.facts.driver,
        "version": r.version,
        "sha256": r.sha256,
        "slot": r.slot,
        "bytes": r.bytes,
        "seconds": round(r.seconds, 3),
        "transfer_seconds": round(r.transfer_seconds, 3),
        "wire_bytes_tx": r.wire_bytes_tx,
        "wire_bytes_rx": r.wire_bytes_rx,
        "retransmits": r.retransmits,
        "resumed_from": r.resumed_from,
        "running_version": r.running_version,
        "details": dict(r.details),
    }


def _run(args: argparse.Namespace) -> int:
    data, is_package = _load(args)
    progress, bar = _progress_bar(sys.stdout.isatty() and not args.json)
    options = driver_options(args, fast_baud=args.fast_baud, confirm_timeout_s=args.confirm_timeout)

    async def body(spec: DriverSpec, driver: Driver, facts: DeviceFacts) -> InstallResult:
        _check_fast_baud(args, facts)
        if is_package:
            image = _check_package(args, data, spec, facts)
        else:
            _check_raw(args, facts)
            image = Image(data, args.version, hashlib.sha256(data).hexdigest())
        return await driver.install(image, progress)

    try:
        if bar is not None:
            with bar:
                result = run_with_driver(args, options, body)
        else:
            result = run_with_driver(args, options, body)
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
            f"{result.outcome.value}: version {result.version} in slot {result.slot}, "
            f"{result.bytes} bytes in {result.seconds:.2f} s ({rate / 1024:.1f} KiB/s), "
            f"resumed from {result.resumed_from}, {result.retransmits} retransmits"
        )
    if result.outcome is Outcome.ROLLED_BACK:
        print(
            f"mcu-gateway flash: error: {args.port}: the new app did not confirm; "
            f"the MCU rolled back to {result.running_version}",
            file=sys.stderr,
        )
        return 1
    if result.outcome is not Outcome.CONFIRMED:
        print(
            f"mcu-gateway flash: error: {args.port}: the new app has not confirmed within "
            f"{args.confirm_timeout:g} s",
            file=sys.stderr,
        )
        return 1
    return 0

"""`mcu-gateway image`: make, sign, check and show firmware packages.

Release engineers run these; the gateway uses the same ``firmware`` code, so
``verify`` here refuses exactly what the gateway would refuse.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import CommandError, add_trust_args

if TYPE_CHECKING:
    from firmware.keys import PrivateKey
    from firmware.manifest import Manifest


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "image",
        help="create, sign, verify and inspect firmware packages",
        description="Firmware package tools (format: docs/package.md).",
    )
    cmds = p.add_subparsers(dest="image_command", required=True, metavar="ACTION")

    k = cmds.add_parser("keygen", help="create a signing key pair")
    k.add_argument(
        "--out",
        required=True,
        type=Path,
        help="path prefix: writes PREFIX.key (0600) and PREFIX.pub",
    )
    k.add_argument("--alg", choices=("ed25519", "p256"), default="ed25519")
    k.add_argument("--force", action="store_true", help="overwrite existing files")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=_keygen)

    pk = cmds.add_parser("pack", help="build a package from a payload .bin")
    pk.add_argument("payload", type=Path)
    pk.add_argument("-o", "--out", required=True, type=Path)
    pk.add_argument("--provider", required=True)
    pk.add_argument("--name", required=True)
    pk.add_argument("--version", required=True, help="semantic version of the payload")
    pk.add_argument("--manufacturer", required=True)
    pk.add_argument("--model", required=True)
    pk.add_argument("--hwrev", help="hardware revision (omit: any revision)")
    pk.add_argument("--min-installed", help="refuse MCUs running an older version")
    pk.add_argument(
        "--target-image",
        type=int,
        help="image number on a multi-image device (MCUboot: 1 = an nRF5340's network core)",
    )
    pk.add_argument("--key", type=Path, help="private key to sign with (omit: unsigned)")
    pk.add_argument(
        "--adu-manifest",
        type=Path,
        metavar="FILE",
        help="also write an Azure Device Update import manifest v5 for the package (docs/adu.md)",
    )
    pk.add_argument("--json", action="store_true")
    pk.set_defaults(func=_pack)

    d = cmds.add_parser(
        "delta",
        help="make a delta package from OLD to NEW",
        description="Make a signed delta package: a patch from OLD's image to NEW's, for "
        "MCUs running OLD (mcugw bootloaders with the DELTA capability; docs/package.md). "
        "It names its base by version and SHA-256; an MCU running anything else refuses "
        "it before writing (DELTA_BASE_MISMATCH).",
    )
    d.add_argument("--from", dest="old", required=True, type=Path, help="the base package")
    d.add_argument("--to", dest="new", required=True, type=Path, help="the target package")
    d.add_argument("-o", "--out", required=True, type=Path)
    d.add_argument("--key", type=Path, help="private key to sign with (omit: unsigned)")
    add_trust_args(d, "key OLD and NEW are signed with, if not --key's (repeatable)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_delta)

    s = cmds.add_parser("sign", help="(re)sign a package")
    s.add_argument("package", type=Path)
    s.add_argument("--key", required=True, type=Path)
    s.add_argument("-o", "--out", type=Path, help="output file (default: in place)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_sign)

    v = cmds.add_parser("verify", help="check a package as the gateway would")
    v.add_argument("package", type=Path)
    add_trust_args(v, "trusted public key (repeatable)")
    v.add_argument("--allow-unsigned", action="store_true")
    v.add_argument("--check-value", help="expected SHA-256 of the package file")
    v.add_argument("--compat", help="MCU compatibility string manufacturer:model:hwrev")
    v.add_argument("--installed", help="MCU's installed version (downgrade checks)")
    v.add_argument("--allow-downgrade", action="store_true")
    v.add_argument(
        "--base-sha256",
        help="SHA-256 of the image the MCU runs: checks a delta package's base (with --compat)",
    )
    v.add_argument("--max-size", type=int, help="size cap in bytes")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)

    i = cmds.add_parser("inspect", help="show a package's manifest and signature")
    i.add_argument("package", type=Path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)


def _keygen(args: argparse.Namespace) -> int:
    from firmware import keys
    from firmware.keys import Algorithm

    alg = Algorithm.ED25519 if args.alg == "ed25519" else Algorithm.ECDSA_P256_SHA256
    key_path = Path(f"{args.out}.key")
    pub_path = Path(f"{args.out}.pub")
    key = keys.generate(alg)
    try:
        keys.write_private_key(key_path, key, overwrite=args.force)
        if pub_path.exists() and not args.force:
            raise FileExistsError(pub_path)
        pub_path.write_bytes(keys.public_pem(key))
    except FileExistsError as exc:
        raise CommandError(f"{exc.filename or pub_path} exists (use --force)") from None
    except OSError as exc:
        raise CommandError(f"cannot write key: {exc}") from None
    kid = keys.key_id(key.public_key()).hex()
    _emit(
        args,
        {
            "private_key": str(key_path),
            "public_key": str(pub_path),
            "algorithm": alg.label,
            "key_id": kid,
        },
        f"wrote {key_path} (0600, keep secret) and {pub_path}\nalgorithm {alg.label}, key id {kid}",
    )
    return 0


def _pack(args: argparse.Namespace) -> int:
    from firmware.package import build, manifest_for

    payload = _read(args.payload)
    key = _private_key(args.key) if args.key else None
    try:
        manifest = manifest_for(
            payload,
            provider=args.provider,
            name=args.name,
            version=args.version,
            manufacturer=args.manufacturer,
            model=args.model,
            hwrev=args.hwrev,
            min_installed_version=args.min_installed,
            target_image=args.target_image,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    data = build(manifest, payload, key)
    adu = _adu_manifest(args, manifest, data) if args.adu_manifest else None  # refuse first
    _write_atomic(args.out, data)
    if adu is not None:
        _write_atomic(args.adu_manifest, adu)
    _emit_written(args, args.out, data, signed=key is not None)
    return 0


def _adu_manifest(args: argparse.Namespace, manifest: Manifest, data: bytes) -> bytes:
    from gateway.adu.errors import AduManifestError
    from gateway.adu.importmanifest import import_manifest

    try:
        doc = import_manifest(manifest, file_name=args.out.name, package=data)
    except AduManifestError as exc:
        raise CommandError(f"--adu-manifest: {exc.message}") from None
    return (json.dumps(doc, indent=2) + "\n").encode()


def _delta(args: argparse.Namespace) -> int:
    import dataclasses

    from firmware.errors import FirmwareError
    from firmware.keys import PublicKey, load_public_key
    from firmware.package import build, manifest_for, verify
    from protocols.mcugw.encoding import delta

    key = _private_key(args.key) if args.key else None
    try:
        anchors = [load_public_key(p) for p in args.trust]
        if key is not None:
            anchors.append(PublicKey.from_key(key.public_key()))
        # A patch is only as good as its inputs: they must verify, signed or not.
        old = verify(_read(args.old), anchors, allow_unsigned=True)
        new = verify(_read(args.new), anchors, allow_unsigned=True)
    except FirmwareError as exc:
        raise CommandError(f"{exc.reason.value}: {exc.message}") from None
    for pkg, path in ((old, args.old), (new, args.new)):
        if pkg.manifest.is_delta:
            raise CommandError(f"{path} is itself a delta package; give full packages")
    if dataclasses.astuple(old.manifest.compatibility) != dataclasses.astuple(
        new.manifest.compatibility
    ):
        raise CommandError("OLD and NEW are built for different MCUs (compatibility differs)")
    t0 = time.process_time()
    patch = delta(old.payload, new.payload)
    cpu = time.process_time() - t0
    m = new.manifest
    try:
        manifest = manifest_for(
            patch.stream,
            provider=m.update.provider,
            name=m.update.name,
            version=m.update.version,
            manufacturer=m.compatibility.manufacturer,
            model=m.compatibility.model,
            hwrev=m.compatibility.hwrev,
            min_installed_version=m.min_installed_version,
            delta_base=old.manifest.update.version,
            delta_base_sha256=old.manifest.payload_sha256,
            delta_target=new.payload,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    data = build(manifest, patch.stream, key)
    _write_atomic(args.out, data)
    share = len(patch.stream) / max(1, len(new.payload))
    _emit(
        args,
        {
            "file": str(args.out),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "signed": key is not None,
            "base": {"version": old.manifest.update.version, "sha256": old.manifest.payload_sha256},
            "target": {"version": m.update.version, "size": len(new.payload)},
            "patch_bytes": len(patch.stream),
            "cpu_seconds": round(cpu, 3),
        },
        f"wrote {args.out}: {len(data)} bytes, {'signed' if key else 'UNSIGNED'}\n"
        f"patch {old.manifest.update.version} -> {m.update.version}: {len(patch.stream)} bytes "
        f"({share:.1%} of the {len(new.payload)}-byte image), {cpu:.2f} s CPU\n"
        f"fwPackageCheckValue {hashlib.sha256(data).hexdigest()}\nfwPackageSize {len(data)}",
    )
    return 0


def _sign(args: argparse.Namespace) -> int:
    from firmware.errors import FirmwareError
    from firmware.package import resign

    key = _private_key(args.key)
    try:
        data = resign(_read(args.package), key)
    except FirmwareError as exc:
        raise CommandError(f"{args.package}: {exc}") from None
    out = args.out or args.package
    _write_atomic(out, data)
    _emit_written(args, out, data, signed=True)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from firmware.errors import FirmwareError
    from firmware.keys import load_public_key
    from firmware.package import verify
    from firmware.policy import DEFAULT_MAX_SIZE, TrustPolicy, check_package

    data = _read(args.package)
    try:
        anchors = tuple(load_public_key(p) for p in args.trust)
    except FirmwareError as exc:
        raise CommandError(str(exc)) from None
    checks: list[str] = []
    digest = hashlib.sha256(data).hexdigest()
    if args.check_value:
        if digest != args.check_value.lower():
            raise CommandError(
                f"CHECK_VALUE_MISMATCH: {args.package} has SHA-256 {digest}, "
                f"expected {args.check_value}"
            )
        checks.append("package SHA-256 matches --check-value")
    policy = TrustPolicy(anchors, args.allow_unsigned, args.max_size or DEFAULT_MAX_SIZE)
    try:
        if args.compat:
            from firmware.compat import TargetInfo

            model = args.compat.split(":")[1] if args.compat.count(":") == 2 else ""
            base = args.base_sha256.lower() if args.base_sha256 else None
            target = TargetInfo(args.compat, model, args.installed, delta_base_sha256=base)
            verdict = check_package(
                data,
                target=target,
                policy=policy,
                allow_downgrade=args.allow_downgrade,
                allow_delta=base is not None,
            )
            if not verdict.ok:
                raise CommandError(f"{verdict.reason.value}: {verdict.message}")
            assert verdict.package is not None
            package = verdict.package
        else:
            if len(data) > policy.max_size:
                raise CommandError(
                    f"TOO_LARGE: package is {len(data)} bytes, cap is {policy.max_size}"
                )
            package = verify(data, anchors, allow_unsigned=args.allow_unsigned)
    except FirmwareError as exc:
        raise CommandError(f"{exc.reason.value}: {exc.message}") from None
    m = package.manifest
    checks.append(f"structure: format 1, {len(data)} bytes, nothing truncated or trailing")
    if package.signature.signed:
        checks.append(
            f"signature: {package.signature.algorithm.label} by trusted key "
            f"{package.signature.key_id.hex()}"
        )
    else:
        checks.append("signature: none (unsigned allowed); manifest digest intact")
    checks.append(f"payload: {m.payload_size} bytes, SHA-256 {m.payload_sha256} matches")
    if args.compat:
        checks.append(
            f"compatible with {args.compat}; version policy passed "
            f"(installed {args.installed or 'unknown'})"
        )
    _emit(
        args,
        {
            "ok": True,
            "package": str(args.package),
            "sha256": digest,
            "version": m.update.version,
            "checks": checks,
        },
        "\n".join(
            [
                f"OK {args.package}: {m.update.provider}/{m.update.name} {m.update.version}",
                *(f"  ✓ {c}" for c in checks),
            ]
        ),
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from firmware.errors import FirmwareError
    from firmware.manifest import Manifest
    from firmware.package import parse

    data = _read(args.package)
    try:
        raw = parse(data)
        manifest = Manifest.from_bytes(raw.manifest_bytes)
    except FirmwareError as exc:
        raise CommandError(f"{args.package}: {exc}") from None
    sig = raw.signature
    info = {
        "file": str(args.package),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "manifest": manifest.to_dict(),
        "signature": {
            "algorithm": sig.algorithm.label,
            "key_id": sig.key_id.hex() if sig.signed else None,
        },
    }
    lines = [
        f"file        {args.package} ({len(data)} bytes)",
        f"sha256      {info['sha256']}  (fwPackageCheckValue)",
        f"update      {manifest.update.provider}/{manifest.update.name} {manifest.update.version}",
        f"compatible  {manifest.compatibility.manufacturer}:{manifest.compatibility.model}:"
        f"{manifest.compatibility.hwrev or '*'}",
        f"payload     {manifest.payload_size} bytes, sha256 {manifest.payload_sha256}",
        f"min version {manifest.min_installed_version or '-'}",
        f"delta base  {manifest.delta_base or '-'}"
        + (
            f" (sha256 {manifest.delta_base_sha256}), makes {manifest.delta_target_size} bytes"
            if manifest.is_delta
            else ""
        ),
        f"signature   {sig.algorithm.label}"
        + (f", key id {sig.key_id.hex()}" if sig.signed else " (unsigned)"),
    ]
    _emit(args, info, "\n".join(lines))
    return 0


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj, sort_keys=True) if args.json else text)


def _emit_written(args: argparse.Namespace, out: Path, data: bytes, *, signed: bool) -> None:
    digest = hashlib.sha256(data).hexdigest()
    _emit(
        args,
        {"file": str(out), "size": len(data), "sha256": digest, "signed": signed},
        f"wrote {out}: {len(data)} bytes, {'signed' if signed else 'UNSIGNED'}\n"
        f"fwPackageCheckValue {digest}\nfwPackageSize {len(data)}",
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _private_key(path: Path) -> PrivateKey:
    from firmware.errors import FirmwareError
    from firmware.keys import load_private_key

    try:
        return load_private_key(path)
    except FirmwareError as exc:
        raise CommandError(exc.message) from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None

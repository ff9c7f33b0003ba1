"""The verification policy: may these package bytes go to this MCU?

Two entry points:

* The gateway, after downloading what the twin names::

      verdict = evaluate(data, desired=parse_desired(twin), target=target, policy=policy)
      if not verdict.ok:
          report_error(verdict.reason.value, verdict.message)

* ``mcu-gateway flash``, with a package file and the MCU's INFO, before writing
  a single byte::

      verdict = check_package(Path(file).read_bytes(), target=target, policy=policy)
      if not verdict.ok:
          raise CommandError(f"{verdict.reason.value}: {verdict.message}")
      write(verdict.package.payload, version=verdict.package.manifest.update.version)

Both return a :class:`Verdict` rather than raising, so a refusal is data the
caller reports, and only programming errors propagate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from firmware.compat import TargetInfo, check_compatible
from firmware.errors import FirmwareError, VerificationError
from firmware.keys import PublicKey, load_public_key
from firmware.manifest import Manifest, parse_version
from firmware.package import Package, verify
from firmware.reasons import ReasonCode
from firmware.twin import DesiredFirmware

DEFAULT_MAX_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class TrustPolicy:
    """Trust anchors and limits from the gateway configuration.

    Several keys may be trusted at once so a signing key can be rotated: ship
    the new public key, then switch the signer, then drop the old key.
    """

    trusted_keys: tuple[PublicKey, ...] = ()
    allow_unsigned: bool = False
    max_size: int = DEFAULT_MAX_SIZE

    @classmethod
    def from_files(
        cls,
        paths: Iterable[Path],
        *,
        allow_unsigned: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> TrustPolicy:
        return cls(tuple(load_public_key(p) for p in paths), allow_unsigned, max_size)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: ReasonCode
    message: str
    package: Package | None = field(default=None, repr=False)

    @classmethod
    def refuse(cls, exc: FirmwareError) -> Verdict:
        return cls(False, exc.reason, exc.message)


def evaluate(
    package_bytes: bytes,
    *,
    desired: DesiredFirmware,
    target: TargetInfo,
    policy: TrustPolicy,
    allow_delta: bool = False,
) -> Verdict:
    """Every check the twin flow needs, cheapest and least trusting first."""
    try:
        if desired.fwPackageSize is not None and len(package_bytes) != desired.fwPackageSize:
            raise VerificationError(
                ReasonCode.SIZE_MISMATCH,
                f"package is {len(package_bytes)} bytes, fwPackageSize "
                f"says {desired.fwPackageSize}",
            )
        _check_size(len(package_bytes), policy.max_size, "package")
        actual = hashlib.sha256(package_bytes).hexdigest()
        if actual != desired.fwPackageCheckValue.lower():
            raise VerificationError(
                ReasonCode.CHECK_VALUE_MISMATCH,
                f"package SHA-256 {actual[:16]}… != fwPackageCheckValue "
                f"{desired.fwPackageCheckValue[:16]}…",
            )
        package = _verify_for_target(
            package_bytes,
            target,
            policy,
            allow_downgrade=desired.allowDowngrade,
            allow_delta=allow_delta,
        )
        have = package.manifest.update.version
        if str(parse_version(have)) != str(parse_version(desired.fwVersion)):
            raise VerificationError(
                ReasonCode.VERSION_MISMATCH,
                f"package version {have} != fwVersion {desired.fwVersion}",
            )
    except FirmwareError as exc:
        return Verdict.refuse(exc)
    return _accept(package)


def check_package(
    package_bytes: bytes,
    *,
    target: TargetInfo,
    policy: TrustPolicy,
    allow_downgrade: bool = False,
    allow_delta: bool = False,
    no_delta_reason: str = "",
) -> Verdict:
    """Signature, integrity, size, compatibility and version policy, without a twin.

    ``no_delta_reason`` says why a delta cannot go (when ``allow_delta`` is false)."""
    try:
        _check_size(len(package_bytes), policy.max_size, "package")
        package = _verify_for_target(
            package_bytes,
            target,
            policy,
            allow_downgrade=allow_downgrade,
            allow_delta=allow_delta,
            no_delta_reason=no_delta_reason,
        )
    except FirmwareError as exc:
        return Verdict.refuse(exc)
    return _accept(package)


def _accept(package: Package) -> Verdict:
    m = package.manifest
    return Verdict(
        True,
        ReasonCode.OK,
        f"{m.update.provider}/{m.update.name} {m.update.version} verified",
        package,
    )


def _verify_for_target(
    data: bytes,
    target: TargetInfo,
    policy: TrustPolicy,
    *,
    allow_downgrade: bool,
    allow_delta: bool = False,
    no_delta_reason: str = "",
) -> Package:
    package = verify(data, policy.trusted_keys, allow_unsigned=policy.allow_unsigned)
    m = package.manifest
    _check_size(m.payload_size, policy.max_size, "payload")
    if target.slot_size is not None:
        _check_size(m.image_size, target.slot_size, "image (MCU slot size)")
    check_compatible(m, target)
    if m.is_delta:
        _check_delta(m, target, allow_delta, no_delta_reason)
    if target.installed_version is None:
        if m.min_installed_version is not None:
            raise VerificationError(
                ReasonCode.BELOW_MINIMUM_VERSION,
                f"package needs installed version >= {m.min_installed_version}, MCU's is unknown",
            )
        return package
    installed = parse_version(target.installed_version)
    if not allow_downgrade and m.version < installed:
        raise VerificationError(
            ReasonCode.DOWNGRADE,
            f"package version {m.version} is older than installed "
            f"{installed} and allowDowngrade is false",
        )
    if m.min_installed_version is not None and installed < parse_version(m.min_installed_version):
        raise VerificationError(
            ReasonCode.BELOW_MINIMUM_VERSION,
            f"installed version {installed} is below the package's "
            f"minimum {m.min_installed_version}",
        )
    return package


def _check_delta(m: Manifest, target: TargetInfo, allow_delta: bool, why: str = "") -> None:
    # A delta's payload is a patch, not an image: written as one it would brick the slot.
    if not allow_delta:
        raise VerificationError(
            ReasonCode.DELTA_UNSUPPORTED,
            f"package is a delta against {m.delta_base}; "
            + (why or "this MCU (or path) takes full images only"),
        )
    if target.delta_base_sha256 != m.delta_base_sha256:
        running = target.delta_base_sha256 or "unknown"
        raise VerificationError(
            ReasonCode.DELTA_BASE_MISMATCH,
            f"delta needs base {m.delta_base} (sha256 {str(m.delta_base_sha256)[:16]}…), "
            f"the MCU runs {target.installed_version} (sha256 {running[:16]}…)",
        )


def _check_size(size: int, cap: int, what: str) -> None:
    if size > cap:
        raise VerificationError(ReasonCode.TOO_LARGE, f"{what} is {size} bytes, cap is {cap}")

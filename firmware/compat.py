"""Does a manifest fit an MCU? Compared against what the bootloader reports in INFO.

The bootloader reports a model and a compatibility string
``manufacturer:model:hwrev`` (ASCII, hwrev may be empty). A manifest fits when
manufacturer and model are equal and its optional hardware revision is absent
or equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.errors import VerificationError
from firmware.manifest import Manifest
from firmware.reasons import ReasonCode

MAX_COMPAT_LEN = 256


@dataclass(frozen=True)
class TargetInfo:
    """What the MCU told us about itself; ``installed_version`` is None when unknown."""

    compat: str
    model: str
    installed_version: str | None = None
    slot_size: int | None = None  # bytes an image slot holds, when the MCU reports it
    #: Hex SHA-256 of the image the MCU runs (a delta's base), when known; None: not
    #: known, or the MCU cannot apply deltas (a delta package is then refused).
    delta_base_sha256: str | None = None


@dataclass(frozen=True)
class CompatString:
    manufacturer: str
    model: str
    hwrev: str


def parse_compat(text: str) -> CompatString:
    if len(text) > MAX_COMPAT_LEN or not text.isascii():
        raise VerificationError(
            ReasonCode.TARGET_INVALID, f"compatibility string {text[:40]!r} is not short ASCII"
        )
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise VerificationError(
            ReasonCode.TARGET_INVALID,
            f"compatibility string {text!r} is not manufacturer:model:hwrev",
        )
    return CompatString(*parts)


def check_compatible(manifest: Manifest, target: TargetInfo) -> None:
    """Raise :class:`VerificationError` naming the field that does not match."""
    mcu = parse_compat(target.compat)
    if mcu.model != target.model:
        raise VerificationError(
            ReasonCode.TARGET_INVALID,
            f"MCU reports model {target.model!r} but compatibility string {target.compat!r}",
        )
    want = manifest.compatibility
    if want.manufacturer != mcu.manufacturer:
        raise VerificationError(
            ReasonCode.INCOMPATIBLE_MANUFACTURER,
            f"package is for manufacturer {want.manufacturer!r}, MCU is {mcu.manufacturer!r}",
        )
    if want.model != mcu.model:
        raise VerificationError(
            ReasonCode.INCOMPATIBLE_MODEL,
            f"package is for model {want.model!r}, MCU is {mcu.model!r}",
        )
    if want.hwrev is not None and want.hwrev != mcu.hwrev:
        raise VerificationError(
            ReasonCode.INCOMPATIBLE_HWREV,
            f"package is for hardware revision {want.hwrev!r}, MCU is {mcu.hwrev!r}",
        )

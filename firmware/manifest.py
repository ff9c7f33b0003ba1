"""The package manifest: what the signature vouches for.

The manifest travels as canonical JSON (sorted keys, no insignificant
whitespace, UTF-8). Parsing insists on canonical bytes, so one manifest has
exactly one byte encoding and a signature over it cannot be replayed against
a re-serialised variant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import semver

from firmware.errors import PackageError
from firmware.reasons import ReasonCode

MANIFEST_VERSION = 1
MAX_NAME_LEN = 128
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Compatibility fields are joined with ':' on the MCU side, so they may not contain one.
_COMPAT_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def canonical_json(obj: Any) -> bytes:
    """The one byte encoding of ``obj`` that signatures are made over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_version(text: str) -> semver.Version:
    """Parse a semantic version; ``ValueError`` names the text when it is not one."""
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a semantic version") from exc


@dataclass(frozen=True)
class UpdateId:
    provider: str
    name: str
    version: str


@dataclass(frozen=True)
class Compatibility:
    manufacturer: str
    model: str
    hwrev: str | None = None


@dataclass(frozen=True)
class Manifest:
    update: UpdateId
    compatibility: Compatibility
    payload_size: int
    payload_sha256: str
    min_installed_version: str | None = None
    # A delta package (docs/package.md): the payload is a patch from the image
    # ``delta_base`` (version) / ``delta_base_sha256`` to the image ``delta_target_*``.
    delta_base: str | None = None
    delta_base_sha256: str | None = None
    delta_target_size: int | None = None
    delta_target_sha256: str | None = None
    #: Which image of a multi-image device the payload is for (an MCUboot image
    #: number: 1 is an nRF5340's network core); None: the port's own setting.
    target_image: int | None = None

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None

    @property
    def image_size(self) -> int:
        """Bytes the slot receives: the payload, or the image a delta produces."""
        return self.delta_target_size if self.delta_target_size is not None else self.payload_size

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def version(self) -> semver.Version:
        return semver.Version.parse(self.update.version)

    def to_dict(self) -> dict[str, Any]:
        compat: dict[str, str] = {
            "manufacturer": self.compatibility.manufacturer,
            "model": self.compatibility.model,
        }
        if self.compatibility.hwrev is not None:
            compat["hardwareRevision"] = self.compatibility.hwrev
        out: dict[str, Any] = {
            "manifestVersion": MANIFEST_VERSION,
            "updateId": {
                "provider": self.update.provider,
                "name": self.update.name,
                "version": self.update.version,
            },
            "compatibility": compat,
            "payload": {"size": self.payload_size, "sha256": self.payload_sha256},
        }
        if self.min_installed_version is not None:
            out["minInstalledVersion"] = self.min_installed_version
        if self.delta_base is not None:
            out["deltaBase"] = self.delta_base
            out["deltaBaseSha256"] = self.delta_base_sha256
            out["deltaTarget"] = {
                "size": self.delta_target_size,
                "sha256": self.delta_target_sha256,
            }
        if self.target_image is not None:
            out["targetImage"] = self.target_image
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            obj = json.loads(data.decode("utf-8"))
            canonical = canonical_json(obj)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _invalid(f"not UTF-8 JSON ({exc})") from exc
        except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit limit
            raise _invalid(f"unreadable JSON value ({exc})") from exc
        except RecursionError:
            raise _invalid("JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise _invalid("not a JSON object")
        if canonical != data:
            raise _invalid("not in canonical form (sorted keys, no spaces)")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Manifest:
        _only_keys(
            obj,
            "manifest",
            required={"manifestVersion", "updateId", "compatibility", "payload"},
            optional={
                "minInstalledVersion",
                "deltaBase",
                "deltaBaseSha256",
                "deltaTarget",
                "targetImage",
            },
        )
        if obj["manifestVersion"] != MANIFEST_VERSION or isinstance(obj["manifestVersion"], bool):
            raise _invalid(f"manifestVersion {obj['manifestVersion']!r} is not supported")
        uid = _object(obj, "updateId")
        _only_keys(uid, "updateId", required={"provider", "name", "version"})
        comp = _object(obj, "compatibility")
        _only_keys(
            comp, "compatibility", required={"manufacturer", "model"}, optional={"hardwareRevision"}
        )
        pay = _object(obj, "payload")
        _only_keys(pay, "payload", required={"size", "sha256"})
        target: dict[str, Any] = {}
        if "deltaTarget" in obj:
            target = _object(obj, "deltaTarget")
            _only_keys(target, "deltaTarget", required={"size", "sha256"})
        try:
            return cls(
                update=UpdateId(
                    provider=_str(uid, "provider"),
                    name=_str(uid, "name"),
                    version=_str(uid, "version"),
                ),
                compatibility=Compatibility(
                    manufacturer=_str(comp, "manufacturer"),
                    model=_str(comp, "model"),
                    hwrev=_str(comp, "hardwareRevision") if "hardwareRevision" in comp else None,
                ),
                payload_size=_int(pay, "size"),
                payload_sha256=_str(pay, "sha256"),
                min_installed_version=(
                    _str(obj, "minInstalledVersion") if "minInstalledVersion" in obj else None
                ),
                delta_base=_str(obj, "deltaBase") if "deltaBase" in obj else None,
                delta_base_sha256=(
                    _str(obj, "deltaBaseSha256") if "deltaBaseSha256" in obj else None
                ),
                delta_target_size=_int(target, "size") if target else None,
                delta_target_sha256=_str(target, "sha256") if target else None,
                target_image=_int(obj, "targetImage") if "targetImage" in obj else None,
            )
        except ValueError as exc:
            raise _invalid(str(exc)) from exc


def _validate(m: Manifest) -> None:
    """Raise ``ValueError`` naming the first bad field; packers and parsers share it."""
    for label, value in (
        ("updateId.provider", m.update.provider),
        ("updateId.name", m.update.name),
    ):
        if not value or len(value) > MAX_NAME_LEN or not value.isprintable():
            raise ValueError(f"{label} must be 1-{MAX_NAME_LEN} printable characters")
    for label, opt in (
        ("manufacturer", m.compatibility.manufacturer),
        ("model", m.compatibility.model),
        ("hardwareRevision", m.compatibility.hwrev),
    ):
        if opt is None:
            continue
        if len(opt) > MAX_NAME_LEN or not _COMPAT_FIELD.fullmatch(opt):
            raise ValueError(
                f"compatibility.{label} {opt!r} must be 1-{MAX_NAME_LEN} printable ASCII "
                "characters without ':' or spaces"
            )
    for label, ver in (
        ("updateId.version", m.update.version),
        ("minInstalledVersion", m.min_installed_version),
        ("deltaBase", m.delta_base),
    ):
        if ver is not None:
            try:
                parse_version(ver)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
    delta = (m.delta_base, m.delta_base_sha256, m.delta_target_size, m.delta_target_sha256)
    if any(v is not None for v in delta) and any(v is None for v in delta):
        raise ValueError("a delta names deltaBase, deltaBaseSha256 and deltaTarget together")
    for label, digest in (
        ("deltaBaseSha256", m.delta_base_sha256),
        ("deltaTarget.sha256", m.delta_target_sha256),
    ):
        if digest is not None and not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"{label} must be 64 lower-case hex digits")
    if m.delta_target_size is not None and m.delta_target_size <= 0:
        raise ValueError("deltaTarget.size must be positive")
    if m.payload_size < 0:
        raise ValueError("payload.size must not be negative")
    if m.target_image is not None and not 0 <= m.target_image <= 15:
        raise ValueError("targetImage must be an image number 0-15")
    if not _SHA256_HEX.fullmatch(m.payload_sha256):
        raise ValueError("payload.sha256 must be 64 lower-case hex digits")


def _invalid(message: str) -> PackageError:
    return PackageError(ReasonCode.MANIFEST_INVALID, f"manifest: {message}")


def _only_keys(
    obj: dict[str, Any],
    where: str,
    *,
    required: AbstractSet[str],
    optional: AbstractSet[str] = frozenset(),
) -> None:
    missing = required - obj.keys()
    if missing:
        raise _invalid(f"{where} lacks {', '.join(sorted(missing))}")
    # Unknown keys are refused: a field we do not understand may be a constraint we would ignore.
    unknown = obj.keys() - required - optional
    if unknown:
        raise _invalid(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj[key]
    if not isinstance(value, dict):
        raise _invalid(f"{key} must be an object")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"{key} must be an integer")
    return value

"""The one failure vocabulary: what kind of failure an error code is, and the code registry.

Every failure the gateway reports carries a stable ``code`` (the twin's
``error.code``, e.g. ``MCU_TIMEOUT``) and a :class:`Kind` that says what sort of
trouble it is. Codes are many and say exactly what went wrong; kinds are few
and are what decisions use: the gateway retries by kind (``Kind.transient``),
falls back from a delta to the full package on ``Kind.DELTA``, and ADU result
codes map from kinds. The same damaged link is ``Kind.LINK`` whichever driver
saw it.

Codes are declared as :class:`Code` enums, one module per origin (this seam's
:class:`DriverCode`, each driver's own table, ``firmware.reasons``,
``gateway.codes``). Declaring an enum registers it here, so :func:`lookup`
finds any code whose module is loaded; :mod:`gateway.codes` loads every
built-in table and renders the documentation's code table from it. A code's
string never changes once published: twins and fleet queries match on it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self


class Kind(enum.StrEnum):
    """What sort of failure a code is; decides retry (see :attr:`transient`)."""

    LINK = "link"  # bytes damaged or lost on the serial link, beyond the driver's own retries
    TIMEOUT = "timeout"  # the MCU or the server stopped answering within its deadline
    DISCONNECTED = "disconnected"  # the port went away (unplugged) or cannot be opened
    BUSY = "busy"  # the device asked to come back later
    NETWORK = "network"  # the package server was unreachable or failed (refused, dropped, 5xx)
    STORAGE = "storage"  # the gateway's own disk failed (cache full, I/O error)
    UNCONFIRMED = "unconfirmed"  # the new image neither confirmed nor rolled back in time
    ABSENT = "absent"  # nothing that speaks the expected protocol answered on the port
    REFUSED = "refused"  # the device declined a request (state, policy, bad argument)
    PROTECTED = "protected"  # the device is locked (readout or write protection)
    UNSUPPORTED = "unsupported"  # a device, bootloader or command this driver cannot use
    DEVICE = "device"  # the device failed at its own job (flash error, hash after writing)
    BOOT = "boot"  # the new image did not run (rolled back, or never started)
    IMAGE = "image"  # the image or package bytes are unusable (format, hash, size)
    DELTA = "delta"  # a delta that does not fit this device; the full package would
    TRUST = "trust"  # a signature, key or server certificate is not trusted
    TARGET = "target"  # the package is not for this device (compatibility, version policy)
    DESIRED = "desired"  # the desired twin section is malformed
    SOURCE = "source"  # the package URL is refused or names nothing (404)
    CONFIG = "config"  # the gateway's or the port's configuration is wrong or incomplete
    ABORTED = "aborted"  # an operator stopped the update
    INTERNAL = "internal"  # a bug in the gateway or a driver
    NONE = "none"  # not a failure (a verdict's OK); never reported as an error

    @property
    def transient(self) -> bool:
        """A later attempt with the same package may succeed, so the gateway retries."""
        return self in _TRANSIENT

    @property
    def meaning(self) -> str:
        return _KIND_MEANING[self]


_TRANSIENT = frozenset(
    {
        Kind.LINK,
        Kind.TIMEOUT,
        Kind.DISCONNECTED,
        Kind.BUSY,
        Kind.NETWORK,
        Kind.STORAGE,
        Kind.UNCONFIRMED,
    }
)

_KIND_MEANING = {
    Kind.LINK: "bytes damaged or lost on the serial link beyond the driver's own retries",
    Kind.TIMEOUT: "the MCU or the server stopped answering within its deadline",
    Kind.DISCONNECTED: "the serial port went away or cannot be opened",
    Kind.BUSY: "the device asked to come back later",
    Kind.NETWORK: "the package server was unreachable or failed (refused, dropped, 5xx)",
    Kind.STORAGE: "the gateway's own disk failed (cache full, I/O error)",
    Kind.UNCONFIRMED: "the new image neither confirmed nor rolled back in time",
    Kind.ABSENT: "nothing that speaks the expected protocol answered on the port",
    Kind.REFUSED: "the device declined a request (state, policy, bad argument)",
    Kind.PROTECTED: "the device is locked (readout or write protection)",
    Kind.UNSUPPORTED: "a device, bootloader or command this driver cannot use",
    Kind.DEVICE: "the device failed at its own job (flash error, wrong hash after writing)",
    Kind.BOOT: "the new image did not run (rolled back, or never started)",
    Kind.IMAGE: "the image or package bytes are unusable (format, hash, size)",
    Kind.DELTA: "a delta that does not fit this device; the full package would",
    Kind.TRUST: "a signature, key or server certificate is not trusted",
    Kind.TARGET: "the package is not for this device (compatibility, version policy)",
    Kind.DESIRED: "the desired twin section is malformed",
    Kind.SOURCE: "the package URL is refused or names nothing (404)",
    Kind.CONFIG: "the gateway's or the port's configuration is wrong or incomplete",
    Kind.ABORTED: "an operator stopped the update",
    Kind.INTERNAL: "a bug in the gateway or a driver",
    Kind.NONE: "not a failure",
}


class Code(enum.StrEnum):
    """Base of every error-code enum: the value is ``error.code``; each member has a kind.

    Members are declared as ``NAME = "CODE", Kind.X, "what it means"``.
    """

    kind: Kind
    meaning: str

    def __new__(cls, value: str, kind: Kind, meaning: str = "") -> Self:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.kind = kind
        obj.meaning = meaning
        return obj

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _TABLES.append(cls)

    @classmethod
    def origin(cls) -> str:
        """Who raises these codes, for the documentation table (the enum's docstring)."""
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0].split(" (")[0]


@dataclass(frozen=True, slots=True)
class Family:
    """Codes built from a device's own error names, e.g. ``MCU_SMP_<name>``.

    ``pattern`` is a regular expression over the whole code; members of a
    :class:`Code` table that match it take precedence (a family gives the
    default kind, the table the exceptions).
    """

    pattern: str
    kind: Kind
    meaning: str
    origin: str
    example: str  # the pattern as the documentation shows it

    def matches(self, code: str) -> bool:
        return re.fullmatch(self.pattern, code) is not None


class FamilyCode(str):
    """A code of a :class:`Family` (not a table member): the string, with its family's kind."""

    __slots__ = ("family", "kind")
    kind: Kind
    family: Family

    def __new__(cls, value: str, family: Family) -> Self:
        obj = super().__new__(cls, value)
        obj.family = family
        obj.kind = family.kind
        return obj

    @property
    def meaning(self) -> str:
        return self.family.meaning

    @classmethod
    def of(cls, code: str) -> FamilyCode:
        for family in _FAMILIES:
            if family.matches(code):
                return cls(code, family)
        raise ValueError(f"error code {code!r} is in no code table or family")


#: Any error code: a table member or a member of a family.
AnyCode = Code | FamilyCode

_TABLES: list[type[Code]] = []
_FAMILIES: list[Family] = []


def register_family(family: Family) -> Family:
    if family not in _FAMILIES:
        _FAMILIES.append(family)
    return family


def tables() -> tuple[type[Code], ...]:
    """Every code table loaded so far, in declaration order."""
    return tuple(t for t in _TABLES if len(t))


def families() -> tuple[Family, ...]:
    return tuple(_FAMILIES)


def codes() -> Iterator[Code]:
    for table in tables():
        yield from table


def lookup(code: str) -> Code | None:
    """The declared member for ``code``, if its table is loaded."""
    for table in _TABLES:
        member = table._value2member_map_.get(code)
        if member is not None:
            assert isinstance(member, Code)
            return member
    return None


def resolve(code: str) -> AnyCode | None:
    """The typed code for a string: a loaded table's member, else a family's; else None."""
    if isinstance(code, Code | FamilyCode):
        return code
    member = lookup(code)
    if member is not None:
        return member
    try:
        return FamilyCode.of(code)
    except ValueError:
        return None


def kind_of(code: str) -> Kind | None:
    """The kind of a loaded code or family member; None for a code no loaded table names."""
    typed = resolve(code)
    return None if typed is None else typed.kind


class DriverCode(Code):
    """Any driver (the seam's shared codes)"""

    TIMEOUT = "MCU_TIMEOUT", Kind.TIMEOUT, "the MCU stopped answering"
    DISCONNECTED = "MCU_DISCONNECTED", Kind.DISCONNECTED, "unplugged, or the port closed"
    NO_ANSWER = "MCU_NO_ANSWER", Kind.ABSENT, "no bootloader of the tried kinds answered"
    PROTOCOL_ERROR = (
        "MCU_PROTOCOL_ERROR",
        Kind.LINK,
        ("garbled or out-of-place answers beyond the driver's own retries"),
    )
    BUSY = "MCU_BUSY", Kind.BUSY, "the bootloader asked to come back later"
    VERIFY_FAILED = (
        "MCU_VERIFY_FAILED",
        Kind.DEVICE,
        ("what the device holds after writing is not what was sent"),
    )
    BOOT_FAILED = "MCU_BOOT_FAILED", Kind.BOOT, "the new image did not start"
    NO_APP = "MCU_NO_APP", Kind.BOOT, "no verified application to start"
    NO_UID = "MCU_NO_UID", Kind.CONFIG, "the device reports no unique id and none is configured"
    IMAGE_REJECTED = (
        "IMAGE_REJECTED",
        Kind.IMAGE,
        ("the image is not one this driver can install (format, hash, version)"),
    )
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE", Kind.IMAGE, "the image is larger than the device's slot"
    CONFIG_INVALID = "DRIVER_CONFIG_INVALID", Kind.CONFIG, "a driver option of the port is invalid"


__all__ = [
    "AnyCode",
    "Code",
    "DriverCode",
    "Family",
    "FamilyCode",
    "Kind",
    "codes",
    "families",
    "kind_of",
    "lookup",
    "register_family",
    "resolve",
    "tables",
]

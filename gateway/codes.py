"""The gateway's own error codes, and the one registry of every built-in code table.

Codes are declared where they are raised (see :mod:`protocols.failures`); this
module loads every built-in table so a code read back from the journal or a
twin can be looked up without having opened its driver. :mod:`gateway.errordocs`
renders the documentation's tables from the same registry.
"""

from __future__ import annotations

import importlib

from protocols.failures import AnyCode, Code, Kind, resolve


class GatewayCode(Code):
    """gateway (the update as a whole)"""

    APP_NOT_CONFIRMED = (
        "APP_NOT_CONFIRMED",
        Kind.UNCONFIRMED,
        ("the new image neither confirmed nor rolled back in time"),
    )
    MCU_VERSION_MISMATCH = (
        "MCU_VERSION_MISMATCH",
        Kind.DEVICE,
        ("after the install the MCU reports another version than the one installed"),
    )
    ROLLED_BACK = "ROLLED_BACK", Kind.BOOT, "the new image failed its trial boot and was reverted"
    ABORTED = "ABORTED", Kind.ABORTED, "an operator aborted the update (abortUpdate)"
    SUPERSEDED = (
        "SUPERSEDED",
        Kind.ABORTED,
        ("desired went back to the installed version while the update ran (journal only)"),
    )
    INTERNAL_ERROR = "INTERNAL_ERROR", Kind.INTERNAL, "the update crashed: a bug in the gateway"


#: Modules declaring the built-in code tables (a plug-in driver's table is loaded with it).
BUILTIN_TABLES = (
    "protocols.failures",
    "protocols.mcugw.codes",
    "protocols.stm32rom.codes",
    "protocols.mcuboot.codes",
    "firmware.reasons",
    "gateway.codes",
)


def load_builtin() -> None:
    for module in BUILTIN_TABLES:
        importlib.import_module(module)


def code_of(code: str) -> AnyCode | None:
    """The typed code for a string from any built-in or loaded plug-in table."""
    load_builtin()
    return resolve(code)


def kind_of(code: str) -> Kind | None:
    typed = code_of(code)
    return None if typed is None else typed.kind


__all__ = ["BUILTIN_TABLES", "GatewayCode", "code_of", "kind_of", "load_builtin"]

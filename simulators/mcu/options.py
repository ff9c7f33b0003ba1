"""Simulator behaviour switches and the ``--fault SPEC`` parser.

Fault specs (repeatable)::

    corrupt=RATE[:DIR]   flip one random bit in a byte with probability RATE (DIR rx|tx|both)
    drop=RATE[:DIR]      drop a byte with probability RATE
    seed=N               RNG seed for corrupt/drop (default 1)
    delay=MS             extra turnaround on every answer
    cut-at=N|P%          power cut once N bytes (or P% of the image) are programmed
    cut-op=N             power cut at the Nth flash operation since power-on (torn write)
    cut-phase=PHASE[:K]  power cut at the Kth flash op (default 1) of PHASE
                         (begin, data, verify, activate, boot, confirm, abort)
    refuse=OPCODE        answer OPCODE with REFUSED
    mute=OPCODE          never answer OPCODE
    crash-on-boot=VER    the app of version VER crashes right after booting
    hang-on-boot=VER     the app of version VER hangs right after booting (no answers, never
                         confirms) until the watchdog resets the part (watchdog_s later)
    baud-fail            SET_BAUD is accepted but the new rate never works
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from protocols.mcugw.constants import PROTOCOL_VERSION, Opcode

PHASES = ("begin", "data", "verify", "activate", "boot", "confirm", "abort")
SUPPORTED_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1_000_000, 2_000_000)


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LinkFaultSpec:
    corrupt_rx: float = 0.0
    corrupt_tx: float = 0.0
    drop_rx: float = 0.0
    drop_tx: float = 0.0
    seed: int = 1


@dataclass(frozen=True, slots=True)
class SimOptions:
    protocol_version: int = PROTOCOL_VERSION
    #: Advertise COMPRESS and DELTA (§17); False makes a plain version-1 MCU.
    decoders: bool = True
    link: LinkFaultSpec = field(default_factory=LinkFaultSpec)
    extra_delay_s: float = 0.0
    cut_at_bytes: int | None = None
    cut_at_fraction: float | None = None
    cut_op: int | None = None
    cut_phase: tuple[str, int] | None = None
    refuse: frozenset[Opcode] = frozenset()
    mute: frozenset[Opcode] = frozenset()
    crash_versions: frozenset[str] = frozenset()
    hang_versions: frozenset[str] = frozenset()
    baud_fail: bool = False
    confirm_delay_s: float = 0.1
    crash_delay_s: float = 0.03
    #: The independent watchdog the bootloader arms before a trial boot (the C models' 1 s).
    watchdog_s: float = 1.0
    baud_fallback_s: float = 1.0


def _rate(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{spec!r}: rate {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"{spec!r}: rate must be between 0 and 1")
    return value


def _opcode(text: str, spec: str) -> Opcode:
    try:
        return Opcode[text.upper()]
    except KeyError:
        names = ", ".join(o.name for o in Opcode)
        raise FaultSpecError(f"{spec!r}: unknown opcode {text!r} (one of {names})") from None


def _int(text: str, spec: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FaultSpecError(f"{spec!r}: {text!r} is not an integer") from None


def parse_faults(specs: list[str], base: SimOptions | None = None) -> SimOptions:
    """Fold ``--fault`` strings into options; raises FaultSpecError naming the bad spec."""
    opts = base or SimOptions()
    link = opts.link
    for spec in specs:
        key, _, value = spec.partition("=")
        key = key.strip().lower()
        if key in ("corrupt", "drop"):
            rate_text, _, direction = value.partition(":")
            rate = _rate(rate_text, spec)
            direction = direction or "both"
            if direction not in ("rx", "tx", "both"):
                raise FaultSpecError(f"{spec!r}: direction must be rx, tx or both")
            updates = {f"{key}_{d}": rate for d in ("rx", "tx") if direction in (d, "both")}
            link = replace(link, **updates)  # type: ignore[arg-type]
        elif key == "seed":
            link = replace(link, seed=_int(value, spec))
        elif key == "delay":
            opts = replace(opts, extra_delay_s=_int(value, spec) / 1000)
        elif key == "cut-at":
            if value.endswith("%"):
                try:
                    percent = float(value[:-1])
                except ValueError:
                    raise FaultSpecError(f"{spec!r}: {value!r} is not a percentage") from None
                opts = replace(opts, cut_at_fraction=_rate(str(percent / 100), spec))
            else:
                opts = replace(opts, cut_at_bytes=_int(value, spec))
        elif key == "cut-op":
            opts = replace(opts, cut_op=_int(value, spec))
        elif key == "cut-phase":
            phase, _, k = value.partition(":")
            if phase not in PHASES:
                raise FaultSpecError(f"{spec!r}: phase must be one of {', '.join(PHASES)}")
            opts = replace(opts, cut_phase=(phase, _int(k, spec) if k else 1))
        elif key == "refuse":
            opts = replace(opts, refuse=opts.refuse | {_opcode(value, spec)})
        elif key == "mute":
            opts = replace(opts, mute=opts.mute | {_opcode(value, spec)})
        elif key == "crash-on-boot":
            if not value:
                raise FaultSpecError(f"{spec!r}: needs a version, e.g. crash-on-boot=2.0.0")
            opts = replace(opts, crash_versions=opts.crash_versions | {value})
        elif key == "hang-on-boot":
            if not value:
                raise FaultSpecError(f"{spec!r}: needs a version, e.g. hang-on-boot=2.0.0")
            opts = replace(opts, hang_versions=opts.hang_versions | {value})
        elif key == "baud-fail":
            opts = replace(opts, baud_fail=True)
        else:
            raise FaultSpecError(f"unknown fault {spec!r}; see `mcu-gateway sim --help`")
    return replace(opts, link=link)

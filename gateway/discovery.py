"""Which serial ports to look at, and what (if anything) answers on each."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from gateway.config import SerialSettings
from protocols import registry
from protocols.driver import DeviceFacts, DriverOptions, DriverSpec


def candidate_ports(settings: SerialSettings) -> list[str]:
    """Explicit paths, glob matches and USB adapters matching VID:PID, de-duplicated."""
    found: list[str] = []
    for entry in settings.ports:
        if "://" in entry:
            found.append(entry)
        elif glob.has_magic(entry):
            found.extend(sorted(glob.glob(entry)))
        else:
            found.append(entry)
    if settings.usb:
        from serial.tools import list_ports

        wanted = {(f.vid, f.pid) for f in settings.usb}
        for port in list_ports.comports():
            if (port.vid, port.pid) in wanted:
                found.append(port.device)
    return list(dict.fromkeys(found))


def port_present(port: str) -> bool:
    """False once a device node (or its symlink target) is gone: unplugged."""
    if "://" in port:
        return True
    return os.path.exists(port)


@dataclass(frozen=True)
class PortPlan:
    """How to talk to one port: the drivers to try, in order, and their options."""

    order: tuple[DriverSpec, ...]
    options: DriverOptions


def plan_for(port: str, settings: SerialSettings, confirm_timeout_s: float) -> PortPlan:
    rule = settings.rule_for(port)
    baud = rule.baud if rule is not None and rule.baud is not None else settings.baud
    extra = dict(rule.options) if rule is not None else {}
    if rule is not None and rule.bootloader is not None:
        names: tuple[str, ...] = (rule.bootloader,)
    else:
        names = settings.bootloaders
    options = DriverOptions(baud=baud, confirm_timeout_s=confirm_timeout_s, extra=extra)
    return PortPlan(tuple(registry.probe_order(names)), options)


@dataclass(frozen=True)
class Probe:
    """What answered on a port: the driver that reached it and the device's facts."""

    port: str
    driver: DriverSpec
    options: DriverOptions
    facts: DeviceFacts


async def probe(port: str, plan: PortPlan) -> Probe:
    """Identify the device without changing what it runs; raises DriverError if none answers."""
    spec, facts = await registry.detect(port, plan.options, plan.order)
    return Probe(port, spec, plan.options, facts)

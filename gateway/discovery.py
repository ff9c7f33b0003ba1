"""Which serial ports to look at, and what (if anything) answers on each."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from gateway.config import SerialSettings
from protocols.packets import HelloResponse, InfoResponse
from protocols.session import BootloaderSession
from protocols.transport import open_transport


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
class Probe:
    port: str
    hello: HelloResponse
    info: InfoResponse


async def probe(port: str, baud: int) -> Probe:
    """HELLO + INFO without changing the MCU's state; raises ProtocolError if nothing answers."""
    transport = await open_transport(port, baud)
    try:
        session = BootloaderSession(transport, baud)
        hello = await session.hello()
        info = await session.info()
        return Probe(port, hello, info)
    finally:
        await transport.close()

"""BOOT0 and NRST pins: a USB-UART adapter's modem lines or Linux GPIO lines.

A port's ``reset_line`` and ``boot0_line`` name where each pin is wired:

``dtr``, ``rts``
    The serial adapter's modem lines (through the transport). An asserted line
    drives the adapter's pin low.
``gpio:CHIP:LINE``
    A line of a GPIO character device (``/dev/gpiochipN``, or its name
    ``gpiochipN``), by offset or by line name, e.g. ``gpio:gpiochip0:17`` or
    ``gpio:/dev/gpiochip1:BOOT0``. Requested through libgpiod (the ``gpiod``
    Python package, libgpiod's own binding) as an output the first time it is
    driven and held until the driver is dropped, so its level stays put
    between a reset and the next one. The pin level is driven as is.

Callers ask for a pin *level* (high or low); :class:`Pins` turns it into a
modem-line state or a GPIO value.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from protocols.transport import ModemLines, Transport


class LineError(ValueError):
    """A line spec that cannot be parsed, or a GPIO line that cannot be requested."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    kind: Literal["dtr", "rts", "gpio"]
    chip: str = ""  # gpio: the character device's path
    line: int | str = 0  # gpio: offset or line name

    def __str__(self) -> str:
        return f"gpio:{self.chip}:{self.line}" if self.kind == "gpio" else self.kind


def parse_line(value: str) -> LineSpec | None:
    """``dtr``, ``rts``, ``none`` or ``gpio:CHIP:LINE``; raises :class:`LineError`."""
    text = value.strip()
    low = text.lower()
    if low == "none":
        return None
    if low == "dtr":
        return LineSpec("dtr")
    if low == "rts":
        return LineSpec("rts")
    if low.startswith("gpio:"):
        chip, sep, line = text[5:].rpartition(":")
        if not sep or not chip or not line:
            raise LineError(f"{text!r}: use gpio:CHIP:LINE, e.g. gpio:gpiochip0:17")
        path = chip if chip.startswith("/") else f"/dev/{chip}"
        return LineSpec("gpio", path, int(line) if line.isdigit() else line)
    raise LineError(f"{text!r}: use dtr, rts, none or gpio:CHIP:LINE")


class GpioLine(Protocol):
    """One requested output line."""

    def set(self, high: bool) -> None: ...

    def release(self) -> None: ...


#: Requests ``line`` of the chip at ``path`` as an output at the given level.
GpioOpener = Callable[[str, "int | str", bool], GpioLine]


class _LibgpiodLine:
    def __init__(self, path: str, line: int | str, high: bool) -> None:
        import gpiod
        from gpiod.line import Direction, Value

        self._value = Value
        self._line = line
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT, output_value=Value.ACTIVE if high else Value.INACTIVE
        )
        self._request = gpiod.request_lines(path, consumer="mcu-gateway", config={line: settings})

    def set(self, high: bool) -> None:
        self._request.set_value(self._line, self._value.ACTIVE if high else self._value.INACTIVE)

    def release(self) -> None:
        self._request.release()


def libgpiod_line(path: str, line: int | str, high: bool) -> GpioLine:
    """A GPIO output line through libgpiod v2 (the ``gpiod`` package)."""
    try:
        return _LibgpiodLine(path, line, high)
    except ImportError as exc:
        raise LineError("GPIO lines need the gpiod package (pip install 'gpiod>=2.2')") from exc
    except (OSError, ValueError) as exc:
        raise LineError(f"cannot request line {line} of {path}: {exc}") from exc


def _release_all(lines: dict[LineSpec, GpioLine]) -> None:
    for line in lines.values():
        line.release()
    lines.clear()


class Pins:
    """Drives pins by level, through the transport's modem lines or GPIO lines."""

    def __init__(self, transport: Transport, opener: GpioOpener = libgpiod_line) -> None:
        self.transport = transport
        self._opener = opener
        self._gpio: dict[LineSpec, GpioLine] = {}
        # GPIO requests end with the driver (or at close), not with each reset.
        self._finalizer = weakref.finalize(self, _release_all, self._gpio)

    def drive(self, spec: LineSpec, high: bool) -> bool:
        """Set the pin ``spec`` to ``high``; False if this port cannot (a pty's modem lines)."""
        if spec.kind == "gpio":
            line = self._gpio.get(spec)
            if line is None:
                self._gpio[spec] = self._opener(spec.chip, spec.line, high)
            else:
                line.set(high)
            return True
        if not isinstance(self.transport, ModemLines):
            return False
        asserted = not high  # an asserted modem line pulls the adapter's pin low
        if spec.kind == "dtr":
            return self.transport.set_lines(dtr=asserted)
        return self.transport.set_lines(rts=asserted)

    def close(self) -> None:
        self._finalizer()


__all__ = ["GpioLine", "GpioOpener", "LineError", "LineSpec", "Pins", "libgpiod_line", "parse_line"]

"""Drivers by name: the built-in ones and any a package adds by entry point.

A third-party package registers a driver in its own ``pyproject.toml``::

    [project.entry-points."mcu_gateway.drivers"]
    mybl = "mypkg.driver:SPEC"

where ``SPEC`` is a :class:`protocols.driver.DriverSpec`. Built-in drivers are
registered the same way by this project, and are also known without package
metadata so a plain source checkout works.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from importlib.metadata import entry_points

from protocols.driver import DeviceFacts, Driver, DriverError, DriverOptions, DriverSpec, NoAnswer
from protocols.errors import PortNotFound
from protocols.failures import DriverCode
from protocols.trace import traced
from protocols.transport import open_transport

ENTRY_POINT_GROUP = "mcu_gateway.drivers"

#: Built-in drivers: name -> "module:attribute" of their DriverSpec.
BUILTIN = {
    "mcugw": "protocols.mcugw.driver:SPEC",
    "stm32-rom": "protocols.stm32rom.driver:SPEC",
    "mcuboot": "protocols.mcuboot.driver:SPEC",
}

log = logging.getLogger(__name__)


class UnknownDriver(LookupError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown bootloader driver {name!r}; known: {', '.join(known)}")
        self.name = name


def _load(target: str) -> DriverSpec | None:
    module, _, attr = target.partition(":")
    try:
        spec = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None  # a built-in not present in this build
        raise
    if not isinstance(spec, DriverSpec):
        raise TypeError(f"{target} is not a DriverSpec")
    return spec


def available() -> dict[str, DriverSpec]:
    """Every driver that can be used here, by name."""
    found: dict[str, DriverSpec] = {}
    for name, target in BUILTIN.items():
        spec = _load(target)
        if spec is not None:
            found[name] = spec
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            spec = ep.load()
        except Exception as exc:  # a broken plug-in must not take the gateway down
            log.warning("bootloader driver %r from %s failed to load: %s", ep.name, ep.value, exc)
            continue
        if isinstance(spec, DriverSpec):
            found[ep.name] = spec
        else:
            log.warning("entry point %r (%s) is not a DriverSpec; ignored", ep.name, ep.value)
    return found


def names() -> list[str]:
    """Every driver name, without importing any driver (for help texts and config checks)."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get(name: str) -> DriverSpec:
    """One driver by name, importing only that driver."""
    spec = _load(BUILTIN[name]) if name in BUILTIN else None
    if spec is None:
        spec = available().get(name)
    if spec is None:
        raise UnknownDriver(name, names())
    return spec


class UnknownOption(ValueError):
    """A per-port option key that none of the drivers that may open the port reads."""

    def __init__(self, key: str, order: Sequence[DriverSpec], known: set[str]) -> None:
        who = " or ".join(s.name for s in order)
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown driver option {key!r} for {who} (known: {listed})")
        self.key = key


def check_options(keys: Iterable[str], order: Sequence[DriverSpec]) -> None:
    """Refuse a key that no driver in ``order`` reads (when they all declare their keys)."""
    if not order or any(s.options is None for s in order):
        return
    known = set().union(*(s.options or () for s in order))
    for key in keys:
        if key not in known:
            raise UnknownOption(key, order, known)


def probe_order(names: Sequence[str] = ()) -> list[DriverSpec]:
    """The drivers to try on a port: ``names`` in that order, or all by probe rank."""
    if names:
        return [get(n) for n in names]
    return sorted(available().values(), key=lambda s: (s.probe_rank, s.name))


@contextlib.asynccontextmanager
async def open_driver(port: str, spec: DriverSpec, options: DriverOptions) -> AsyncIterator[Driver]:
    """Open ``port`` with the line settings ``spec`` needs and yield its driver."""
    try:
        transport = await open_transport(port, spec.serial(options))
    except PortNotFound as exc:
        raise DriverError(DriverCode.DISCONNECTED, str(exc)) from exc
    try:
        yield spec.open(traced(transport, port), options)
    finally:
        await transport.close()


@contextlib.asynccontextmanager
async def connect(
    port: str, options: DriverOptions, order: Sequence[DriverSpec]
) -> AsyncIterator[tuple[DriverSpec, Driver, DeviceFacts]]:
    """Open ``port`` with the first driver in ``order`` whose device answers.

    Raises :class:`NoAnswer` naming every driver tried, or the first error that
    is not a plain silence (a device that answered but failed is reported as is).
    """
    tried: list[str] = []
    for spec in order:
        async with contextlib.AsyncExitStack() as stack:
            driver = await stack.enter_async_context(open_driver(port, spec, options))
            try:
                facts = await driver.identify()
            except NoAnswer as exc:
                tried.append(f"{spec.name}: {exc.message}")
                continue
            yield spec, driver, facts
            return
    raise NoAnswer(f"no bootloader answered on {port} ({'; '.join(tried) or 'no drivers'})")


async def detect(
    port: str, options: DriverOptions, order: Sequence[DriverSpec]
) -> tuple[DriverSpec, DeviceFacts]:
    """Identify the device on ``port`` (see :func:`connect`) and close the port again."""
    async with connect(port, options, order) as (spec, _, facts):
        return spec, facts


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "UnknownDriver",
    "UnknownOption",
    "available",
    "check_options",
    "connect",
    "detect",
    "get",
    "names",
    "open_driver",
    "probe_order",
]

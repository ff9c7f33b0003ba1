"""Simulators by driver name: the built-in ones and any a package adds by entry point.

A package that adds a bootloader driver (``mcu_gateway.drivers``) can add its
simulator beside it, so ``mcu-gateway sim --bootloader NAME``, the lab behind
``demo`` and the end-to-end tests, ``bench.driver_compare`` and the driver
contract tests (:mod:`protocols.testing.contract`) work for it unchanged::

    [project.entry-points."mcu_gateway.simulators"]
    mybl = "mypkg.sim:SPEC"

where ``SPEC`` is a :class:`SimulatorSpec` and ``mybl`` the driver's name.
Looking names up imports nothing; :func:`get` imports only the named spec,
whose module should stay light (import the simulator itself inside ``main``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "mcu_gateway.simulators"

#: Built-in simulators: driver name -> "module:attribute" of their SimulatorSpec.
BUILTIN = {
    "mcugw": "simulators.mcu.spec:SPEC",
    "stm32-rom": "simulators.mcu.stm32rom.spec:SPEC",
    "mcuboot": "simulators.mcu.mcuboot.spec:SPEC",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimModel:
    """One board a simulator can be: what its packages name, and how to start it."""

    manufacturer: str
    device_model: str  # the model the driver reports, which packages must name
    sim_args: tuple[str, ...] = ()  # beyond ``--bootloader NAME --model KEY``


@dataclass(frozen=True, slots=True)
class SimulatorSpec:
    """A simulated device for one driver, and how tools reach it."""

    name: str  # the driver's registry name
    summary: str
    #: Serves ``mcu-gateway sim --pty --bootloader NAME`` with the parsed arguments
    #: (``--state``, ``--model``, ``--uid``, ``--baud``, ``--fault``, ``--link``, ...):
    #: prints ``PTY <path>`` first, runs until SIGTERM, raises ValueError on a bad
    #: option. None only for this project's own simulator, which the CLI serves.
    main: Callable[[argparse.Namespace], int] | None
    #: ``sim`` arguments for a board the driver reaches with ``driver_options`` alone
    #: (for example BOOT0 strapped high where a pty has no modem lines).
    sim_args: tuple[str, ...] = ()
    #: ``DriverOptions.extra`` (``[[serial.port]] options``) for the simulator's port.
    driver_options: Mapping[str, str | int | bool] = field(default_factory=dict)
    #: Wraps a raw payload into the image the driver installs; None: the payload as is.
    make_image: Callable[[bytes, str], bytes] | None = None
    #: Boards by ``--model`` name, for the lab (empty: the simulator's default board).
    models: Mapping[str, SimModel] = field(default_factory=dict)

    def image(self, payload: bytes, version: str) -> bytes:
        return payload if self.make_image is None else self.make_image(payload, version)


class UnknownSimulator(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no simulator for bootloader {name!r} here; known: {', '.join(known)}")
        self.name = name


def _load(target: str) -> SimulatorSpec:
    module, _, attr = target.partition(":")
    spec = getattr(importlib.import_module(module), attr)
    if not isinstance(spec, SimulatorSpec):
        raise TypeError(f"{target} is not a SimulatorSpec")
    return spec


def names() -> list[str]:
    """Every simulator name, without importing any (for help texts and choices)."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get(name: str) -> SimulatorSpec:
    """One simulator by driver name, importing only its spec."""
    if name in BUILTIN:
        return _load(BUILTIN[name])
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        spec = ep.load()
        if isinstance(spec, SimulatorSpec):
            return spec
        raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a SimulatorSpec")
    raise UnknownSimulator(name, names())


def available() -> dict[str, SimulatorSpec]:
    """Every simulator that loads here; a broken plug-in is logged and skipped."""
    found = {name: _load(target) for name, target in BUILTIN.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            spec = ep.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            log.warning("simulator %r from %s failed to load: %s", ep.name, ep.value, exc)
            continue
        if isinstance(spec, SimulatorSpec):
            found[ep.name] = spec
        else:
            log.warning("entry point %r (%s) is not a SimulatorSpec; ignored", ep.name, ep.value)
    return found


def model(name: str) -> tuple[SimulatorSpec, SimModel] | None:
    """The simulator and board for a ``--model`` name, if a non-mcugw simulator has it."""
    for spec in available().values():
        board = spec.models.get(name)
        if board is not None:
            return spec, board
    return None


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "SimModel",
    "SimulatorSpec",
    "UnknownSimulator",
    "available",
    "get",
    "model",
    "names",
]

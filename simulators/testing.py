"""A :class:`protocols.testing.contract.Target` for any driver with a simulator.

``simulated(name, workdir)`` starts ``mcu-gateway sim --pty --bootloader NAME``
(the simulator from :mod:`simulators.registry`, built in or a plug-in's) as a
real process on a pty for each check, unpaced and with fast flash timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from protocols import registry
from protocols.driver import DriverOptions
from protocols.testing.contract import Target
from simulators import registry as simulators

#: How long a simulator may take to print its ``PTY`` line.
START_TIMEOUT_S = 20.0
#: Unpaced link and fast flash: the contract is about behaviour, not timing.
FAST = ("--baud", "0", "--flash-scale", "0.1")
#: The damaged link every simulator models: one byte in twenty it sends has a bit flipped.
DAMAGED_LINK = ("--fault", "corrupt=0.05:tx", "--fault", "seed=3")

_runs = itertools.count()


def simulated(name: str, workdir: Path, *, damaged_link: bool = True) -> Target:
    sim = simulators.get(name)

    @contextlib.asynccontextmanager
    async def start(extra: Sequence[str]) -> AsyncIterator[str]:
        state = workdir / f"{name}-{next(_runs)}"
        cmd = [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader", name,
               "--state", str(state), *FAST, *sim.sim_args, *extra]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                line = (await proc.stdout.readline()).decode().strip()
            if not line.startswith("PTY "):
                _, err = await proc.communicate()
                raise RuntimeError(f"{name} simulator did not start: {err.decode()[-300:]}")
            yield line[4:]
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(10):
                        await proc.communicate()
                except TimeoutError:
                    proc.kill()
                    await proc.communicate()

    return Target(
        spec=registry.get(name),
        options=DriverOptions(baud=0, confirm_timeout_s=10.0, extra=sim.driver_options),
        start=start,
        make_image=sim.image,
        damaged_link=DAMAGED_LINK if damaged_link else None,
    )


__all__ = ["DAMAGED_LINK", "FAST", "simulated"]

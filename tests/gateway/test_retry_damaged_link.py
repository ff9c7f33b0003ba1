"""The same damaged link gets the same retry decision, whichever driver met it.

Each built-in simulator runs as its own process on a pty with the same fault:
one byte in twenty of what the device sends arrives with a bit flipped (the
simulators' shared ``corrupt=RATE:tx`` hook). The driver's install fails at
its own translation point; the gateway must see kind ``link`` for all three
and schedule the same automatic retry, and a restarted gateway reading the
code back from its journal must decide the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from gateway.retry import RetryPolicy, is_transient, retry_delay
from gateway.update import UpdateFailed
from protocols import registry
from protocols.driver import DriverError, DriverOptions, Image
from protocols.failures import Kind
from simulators import registry as simulators
from tests.sim_harness import SimProcess

DAMAGED_LINK = ["--fault", "corrupt=0.05:tx", "--fault", "seed=3"]
POLICY = RetryPolicy()


@pytest.mark.parametrize("name", ["mcugw", "stm32-rom", "mcuboot"])
async def test_a_damaged_link_is_retried_the_same_way_for_every_driver(
    tmp_path: Path, name: str
) -> None:
    sim = simulators.get(name)
    payload = random.Random(7).randbytes(8 * 1024)
    data = sim.image(payload, "2.0.0")
    image = Image(data, "2.0.0", hashlib.sha256(data).hexdigest())
    proc = SimProcess(tmp_path / "state", ["--bootloader", name, *sim.sim_args, *DAMAGED_LINK])
    proc.start()
    try:
        options = DriverOptions(baud=115200, extra=sim.driver_options)
        async with registry.open_driver(proc.port, registry.get(name), options) as driver:
            with pytest.raises(DriverError) as caught:
                async with asyncio.timeout(60):
                    await driver.install(image)
    finally:
        proc.stop()
    exc = caught.value
    failure = UpdateFailed(exc.code, exc.message, exc.phase.value)  # as UpdateRun wraps it
    assert failure.kind is Kind.LINK, f"{name}: {exc.code} ({exc.kind}): {exc.message}"
    delay = retry_delay(failure.kind, 1, POLICY, random.Random(0))
    assert delay == POLICY.next_delay(1, random.Random(0))  # retried, after the same backoff
    assert is_transient(str(failure.code))  # and the same after a restart, from the journal

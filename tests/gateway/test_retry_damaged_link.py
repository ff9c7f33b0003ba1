"""The same damaged link gets the same retry decision, whichever driver met it.

Each built-in simulator runs as its own process on a pty with the same fault:
one byte in twenty of what the device sends arrives with a bit flipped (the
simulators' shared ``corrupt=RATE:tx`` hook, :data:`simulators.testing.DAMAGED_LINK`).
The driver's install fails at its own translation point; the gateway must see
kind ``link`` for all three and schedule the same automatic retry, and a
restarted gateway reading the code back from its journal must decide the same.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from gateway.config import PolicySettings
from gateway.retry import is_transient, retry_delay, update_retry_policy
from gateway.update import UpdateFailed
from protocols.driver import DriverError
from protocols.failures import Kind
from simulators.testing import DAMAGED_LINK, simulated

POLICY = update_retry_policy(PolicySettings())


@pytest.mark.parametrize("name", ["mcugw", "stm32-rom", "mcuboot"])
async def test_a_damaged_link_is_retried_the_same_way_for_every_driver(
    tmp_path: Path, name: str
) -> None:
    target = simulated(name, tmp_path)
    with pytest.raises(DriverError) as caught:
        async with asyncio.timeout(60), target.driver(*DAMAGED_LINK) as driver:
            await driver.install(target.image("2.0.0"))
    exc = caught.value
    failure = UpdateFailed(exc.code, exc.message, exc.phase.value)  # as UpdateRun wraps it
    assert failure.kind is Kind.LINK, f"{name}: {exc.code} ({exc.kind}): {exc.message}"
    delay = retry_delay(failure.kind, 1, POLICY, random.Random(0))
    assert delay == POLICY.next_delay(1, random.Random(0))  # retried, after the same backoff
    assert is_transient(str(failure.code))  # and the same after a restart, from the journal

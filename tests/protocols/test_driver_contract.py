"""Every built-in driver keeps the driver contract, each against its own simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.testing.contract import CHECKS, Check
from simulators.testing import simulated


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["mcugw", "stm32-rom", "mcuboot"])
async def test_builtin_drivers_keep_the_contract(tmp_path: Path, name: str, check: Check) -> None:
    await check(simulated(name, tmp_path))

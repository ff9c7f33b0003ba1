"""BEGIN hashes the confirmed images to find the fallback (§9.3), which takes a real part
time: the client's BEGIN timeout counts it (§11), or a large image never gets past BEGIN."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import replace

from protocols.mcugw.constants import Opcode
from protocols.mcugw.timing import HOST_MARGIN_S
from simulators.mcu.core import McuCore, _synthetic_image
from simulators.mcu.flash import Flash
from simulators.mcu.models import MODELS
from tests.protocols.test_session_after_cut import _session


async def test_a_slow_hash_at_begin_is_waited_for_not_retried() -> None:
    base = MODELS["vmcu-l0"]
    factory = len(_synthetic_image("1.0.0"))
    # Hashing the factory image at BEGIN takes three host margins: a timeout without
    # it expires (and retries, and expires) long before the MCU answers.
    per_kib = int(3 * HOST_MARGIN_S * 1e6 / math.ceil(factory / 1024))
    model = replace(base, hash_us_per_kib=per_kib)
    core = McuCore(model, Flash(model), b"\x0c\x07")
    core.install_initial_app("1.0.0")
    core.power_on(0.0, stay=True)  # in the bootloader: no boot-time hashing first
    begins: list[float] = []
    on_begin = core._handlers[Opcode.BEGIN]

    def counted(now: float, seq: int, msg: object) -> None:
        begins.append(now)
        on_begin(now, seq, msg)

    core._handlers[Opcode.BEGIN] = counted
    image = random.Random(3).randbytes(2 * base.sector_size)
    async with _session(core) as session, asyncio.timeout(60):
        result = await session.flash(image, "2.0.0", encode=False)
    assert result.outcome == "confirmed"
    assert len(begins) == 1  # answered once, late, and waited for

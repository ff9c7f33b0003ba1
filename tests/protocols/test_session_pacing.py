"""How often the session wakes, writes and reports progress during a paced transfer.

The per-frame costs these pin down (a write and a progress call per DATA
acknowledgement) were most of the gateway's CPU per flashed MB
(bench/README.md, "CPU per flashed MB"). The virtual MCU runs in-process on a
link paced at 921600 baud, so acknowledgements arrive as they would on a UART.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from protocols.mcugw.session import PROGRESS_EVERY_S, BootloaderSession
from protocols.mcugw.timing import LinkTiming, ack_batch_delay
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import LinkFaults, McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS
from simulators.mcu.options import parse_faults

BAUD = 921600


class CountingTransport(MemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def write(self, data: bytes) -> None:
        self.writes += 1
        await super().write(data)


async def test_paced_transfer_batches_writes_and_throttles_progress() -> None:
    model = MODELS["vmcu-f4"]
    opts = parse_faults([])
    core = McuCore(model, Flash(model), b"\x01\x02", opts, baud=BAUD)
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    transport = CountingTransport()
    driver = McuDriver(core, BAUD, transport.deliver, LinkFaults(opts.link))
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    loop = asyncio.get_running_loop()
    events: list[tuple[float, int, int]] = []
    try:
        session = BootloaderSession(transport, BAUD)
        async with asyncio.timeout(30):
            await session.connect()
            image = random.Random(5).randbytes(48 * 1024)
            writes_before = transport.writes

            def progress(phase: str, done: int, total: int) -> None:
                if phase == "applying":
                    events.append((loop.time(), done, total))

            result = await session.flash(image, "2.0.0", progress=progress)
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task
    assert result.outcome == "confirmed"
    frames = len(image) // result.chunk
    # VERIFY, ACTIVATE, RESET and a few INFO polls add single writes after the transfer.
    assert transport.writes - writes_before < frames / 2, "one write per DATA frame"
    # Progress: the start, then at most one per PROGRESS_EVERY_S, and always the end.
    assert events[0][1] == 0 and events[-1][1] == len(image) == events[-1][2]
    middle = events[1:-1]
    for (t0, *_), (t1, *_) in itertools.pairwise(middle):
        assert t1 - t0 >= PROGRESS_EVERY_S * 0.99
    assert [done for _, done, _ in events] == sorted(done for _, done, _ in events)
    assert len(events) < frames / 2


def test_ack_batching_waits_only_for_the_excess_over_half_a_window() -> None:
    link = LinkTiming(baud=BAUD)
    window, chunk = 8192, 1024
    assert ack_batch_delay(link, 4096, window, chunk) == 0.0
    assert ack_batch_delay(link, 2048, window, chunk) == 0.0
    assert ack_batch_delay(link, 8192, window, chunk) == link.wire_time(4096)
    # Stop-and-wait or a two-frame window: nothing to batch.
    assert ack_batch_delay(link, 2048, 2048, chunk) == 0.0
    # Unpaced links never wait.
    assert ack_batch_delay(LinkTiming(baud=0), 8192, window, chunk) == 0.0

"""Retry budgets from the link's observed loss (docs/protocol.md §6; issue 17 item 4).

The estimator is sans-I/O (``LinkLoss``); the session tests run the real session
against the virtual MCU over an in-memory link that loses chosen frames.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from protocols.errors import DeviceTimeout
from protocols.mcugw.client import FAIL_TARGET, ClientProtocol, LinkLoss, TimedOut
from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import Mode, Status
from protocols.mcugw.packets import (
    ActivateRequest,
    BeginRequest,
    ErrorResponse,
    HelloRequest,
    InfoRequest,
    InfoResponse,
    ResetRequest,
)
from protocols.mcugw.session import MAX_SILENT_ATTEMPTS, BootloaderSession
from protocols.mcugw.transfer import MAX_LOSSY_TIMEOUTS, MAX_TIMEOUTS, TransferWindow
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import LinkFaults, McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS

MODEL = MODELS["vmcu-l0"]


def test_no_estimate_without_both_answers_and_losses() -> None:
    silent = LinkLoss()
    silent.record(5, 0, 500)  # never answered: an absent or foreign device
    clean = LinkLoss()
    clean.record(50, 50, 5000)  # answered every time
    for loss in (LinkLoss(), silent, clean):
        assert loss.rate() == 0.0
        assert loss.tries_for(10_000) == 1


@pytest.mark.parametrize("per_byte", [1e-3, 5e-3, 1e-2, 2e-2])
def test_the_budget_makes_failing_every_try_less_likely_than_the_target(
    per_byte: float,
) -> None:
    rng = random.Random(per_byte)
    loss = LinkLoss()
    for _ in range(3000):  # exchanges of 100 bytes on a link losing per_byte of them
        ok = all(rng.random() >= per_byte for _ in range(100))
        loss.record(1, int(ok), 100)
    assert loss.rate() == pytest.approx(per_byte, rel=0.25)
    for nbytes in (20, 80, 200):
        tries = loss.tries_for(nbytes)
        fail_once = 1 - math.exp(-per_byte * nbytes)
        assert fail_once**tries <= FAIL_TARGET * 10  # the estimate, not the truth, sized it
        # Noisier link or longer exchange: never fewer tries.
        assert tries >= loss.tries_for(nbytes // 2)


def test_the_client_counts_every_send_and_its_outcome() -> None:
    client = ClientProtocol()
    client.send_request(InfoRequest(), 0.0, 0.5, attempts=3, answer_size=200)
    client.data_to_send()
    client.poll(0.6)  # silence: second send
    client.poll(1.2)  # third
    answer = ErrorResponse(InfoRequest.OPCODE, Status.BAD_STATE)
    client.receive_data(Codec().encode(answer, 1))
    while client.next_event() is not None:
        pass
    assert (client.loss.tries, client.loss.answered) == (3, 1)
    client.send_request(InfoRequest(), 2.0, 0.5, attempts=1)
    client.data_to_send()
    client.poll(2.6)
    events = []
    while (ev := client.next_event()) is not None:
        events.append(ev)
    assert isinstance(events[-1], TimedOut)
    assert (client.loss.tries, client.loss.answered) == (4, 1)


class _Loses(MemoryTransport):
    """An in-memory link that loses the host's frames ``lose`` picks, and garbles one
    answer of each kind ``garble`` picks (so the session has seen damage, as on a
    noisy UART)."""

    def __init__(
        self, lose: Callable[[object], bool], garble: Callable[[object], bool] = lambda m: False
    ) -> None:
        super().__init__()
        self.lose = lose
        self.garble = garble
        self.lost: dict[str, int] = {}

    async def write(self, data: bytes) -> None:
        codec = Codec()
        codec.receive_data(data)
        while (ev := codec.next_event()) is not None:
            if isinstance(ev, PacketReceived) and self.lose(ev.message):
                name = type(ev.message).__name__
                self.lost[name] = self.lost.get(name, 0) + 1
                return
        await super().write(data)

    def deliver(self, data: bytes) -> None:
        codec = Codec()
        codec.receive_data(data)
        while (ev := codec.next_event()) is not None:
            if isinstance(ev, PacketReceived) and self.garble(ev.message):
                data = data[:4] + bytes([data[4] ^ 0xFF]) + data[5:]
        super().deliver(data)


@asynccontextmanager
async def _session(transport: _Loses) -> AsyncIterator[tuple[McuCore, BootloaderSession]]:
    core = McuCore(MODEL, Flash(MODEL), b"\x17\x04", None)
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    driver = McuDriver(core, 0, transport.deliver, LinkFaults(core.opts.link))
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        yield core, BootloaderSession(transport, 0)
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task


def _first(kind: type, n: int) -> Callable[[object], bool]:
    seen = [0]

    def pick(message: object) -> bool:
        if isinstance(message, kind) and seen[0] < n:
            seen[0] += 1
            return True
        return False

    return pick


async def test_begin_gets_the_tries_the_observed_loss_calls_for() -> None:
    """Issue 17 item 4: "no answer to BEGIN ... after 6 attempts" on a noisy link.

    Connect loses two INFO requests and sees one damaged INFO answer; BEGIN is
    then lost 8 times in a row. The fixed budget gave BEGIN 6 tries.
    """
    lose_info, lose_begin = _first(InfoRequest, 2), _first(BeginRequest, 8)
    transport = _Loses(lambda m: lose_info(m) or lose_begin(m), garble=_first(InfoResponse, 1))
    async with _session(transport) as (_core, session):
        async with asyncio.timeout(60):
            result = await session.flash(random.Random(1).randbytes(5000), "2.0.0")
    assert result.outcome == "confirmed"
    assert transport.lost == {"InfoRequest": 2, "BeginRequest": 8}
    assert session.stats.garbled >= 1


async def test_a_dead_mcu_still_ends_in_a_timeout() -> None:
    """However lossy the link looked, a command that is never answered fails, bounded."""
    lose_info = _first(InfoRequest, 2)
    transport = _Loses(lambda m: lose_info(m) or isinstance(m, BeginRequest))
    async with _session(transport) as (_, session):
        async with asyncio.timeout(60):
            with pytest.raises(DeviceTimeout, match="no answer to BEGIN"):
                await session.flash(random.Random(2).randbytes(5000), "2.0.0")
    assert 6 < transport.lost["BeginRequest"] <= MAX_SILENT_ATTEMPTS


async def test_outcome_polls_lost_past_the_deadline_still_find_the_confirmed_image() -> None:
    """A flash whose app runs and confirmed is never reported unconfirmed because the
    outcome polls were lost: it is decided from what the MCU says."""
    activated = [False]
    lost_polls = [0]

    def lose(message: object) -> bool:
        if isinstance(message, ActivateRequest):
            activated[0] = True
        if activated[0] and isinstance(message, InfoRequest) and lost_polls[0] < 5:
            lost_polls[0] += 1  # about 2 s of polls, past the 0.7 s deadline below
            return True
        return False

    transport = _Loses(lose)
    async with _session(transport) as (_core, session):
        async with asyncio.timeout(60):
            result = await session.flash(
                random.Random(3).randbytes(5000), "2.0.0", confirm_timeout=0.1
            )
    assert lost_polls[0] == 5
    assert result.outcome == "confirmed"
    assert result.running_version == "2.0.0"


def test_damaged_answers_grow_the_resend_budget_up_to_the_cap() -> None:
    """A first INFO after a clean-looking HELLO: its 174-byte answer keeps arriving
    damaged. Each damaged copy proves the MCU alive, so the budget grows with the
    loss this request itself has shown, up to the cap, instead of stopping at 2."""
    damaged = b"\x05\x01\x02\x03\x04\x00"
    client = ClientProtocol()
    client.loss.record(2, 1, 60)  # the HELLO took two tries
    client.send_request(InfoRequest(), 0.0, 0.5, 1, garble_resends=2, answer_size=174,
                        resend_cap=30)  # fmt: skip
    client.data_to_send()
    resends = 0
    for i in range(40):
        client.receive_data(damaged)
        while client.next_event() is not None:
            pass
        client.poll(0.001 * (i + 1))
        resends += bool(client.data_to_send())
    assert resends == 30  # grown past the 2 given, stopped at the cap
    clean = ClientProtocol()  # no loss history: nothing to grow from
    clean.send_request(InfoRequest(), 0.0, 0.5, 1, garble_resends=2, answer_size=174,
                       resend_cap=30)  # fmt: skip
    clean.data_to_send()
    sent = 0
    for i in range(10):
        clean.receive_data(damaged)
        while clean.next_event() is not None:
            pass
        clean.poll(0.001 * (i + 1))
        sent += bool(clean.data_to_send())
    assert sent == 2


def _silent_sends(client: ClientProtocol, damaged_first: bool) -> int:
    """Sends of one INFO that gets at most one damaged answer, then only silence."""
    client.send_request(InfoRequest(), 0.0, 0.5, 3, garble_resends=32, answer_size=174,
                        resend_cap=400, silent_cap=40)  # fmt: skip
    sends = bool(client.data_to_send())
    if damaged_first:
        client.receive_data(b"\x05\x01\x02\x03\x04\x00")
        while client.next_event() is not None:
            pass
        client.poll(0.001)
        sends += bool(client.data_to_send())
    now = 0.001
    for _ in range(100):
        now += 0.6
        client.poll(now)
        sends += bool(client.data_to_send())
        events = []
        while (ev := client.next_event()) is not None:
            events.append(ev)
        if any(isinstance(ev, TimedOut) for ev in events):
            return sends
    raise AssertionError("never timed out")


def test_silence_after_a_damaged_answer_gets_the_tries_the_loss_calls_for() -> None:
    """Issue 17 item 4, seed 127 of bench.noisy_flash: INFO's answers came back
    damaged and its resends were lost 6 times; the fixed 6 tries on silence ran out
    while the MCU was plainly alive."""
    noisy = ClientProtocol()
    noisy.loss.record(2, 1, 60)  # HELLO took two tries
    assert _silent_sends(noisy, damaged_first=True) > 7
    # Never answered at all, however lossy the link looked: the fixed 3 tries.
    dead = ClientProtocol()
    dead.loss.record(2, 1, 60)
    assert _silent_sends(dead, damaged_first=False) == 3


async def test_boot_probes_lost_past_the_deadline_get_more_probes() -> None:
    """Issue 17 item 4, seed 20 of bench.noisy_flash: after RESET(STAY) at connect
    every HELLO probe was hit until the fixed boot deadline passed."""
    reset_seen = [False]
    lost_probes = [0]
    lose_info = _first(InfoRequest, 1)

    def lose(message: object) -> bool:
        if isinstance(message, ResetRequest):
            reset_seen[0] = True
        if reset_seen[0] and isinstance(message, HelloRequest) and lost_probes[0] < 7:
            lost_probes[0] += 1  # 7 probes of 0.45 s: past the 2.1 s deadline
            return True
        return lose_info(message)

    transport = _Loses(lose)
    async with _session(transport) as (_core, session):
        async with asyncio.timeout(60):
            info = await session.connect()
    assert lost_probes[0] == 7
    assert info.mode is Mode.BOOTLOADER


def _timeouts_until_given_up(loss: LinkLoss | None) -> int:
    win = TransferWindow(bytes(4096), start=0, chunk=64, window=256, rto=1.0,
                         nak_holdoff=0.1, loss=loss)  # fmt: skip
    win.frames_to_send(0.0)
    for n in range(1, 100):
        deadline = win.next_deadline()
        assert deadline is not None
        try:
            win.on_timeout(deadline)
        except DeviceTimeout:
            return n - 1
        win.frames_to_send(deadline)
    raise AssertionError("never gave up")


def test_data_timeouts_in_a_row_follow_the_observed_loss() -> None:
    """Issue 17 item 4, seed 102 of bench.noisy_flash (16 KiB): the last DATA frame and
    its acknowledgement were lost 9 rounds in a row on a link losing 1 byte in 100."""
    assert _timeouts_until_given_up(None) == MAX_TIMEOUTS  # nothing lost: the fixed 8
    lossy = LinkLoss()
    lossy.record(1000, 370, 1000 * 100)  # about 1e-2 of the bytes lost
    allowed = _timeouts_until_given_up(lossy)
    assert MAX_TIMEOUTS < allowed <= MAX_LOSSY_TIMEOUTS

"""The serial transport on a real pseudo-terminal: bursts, back-pressure, hang-up.

The transport reads the port's fd directly (bench/README.md, "CPU per flashed
MB"), so these pin what pyserial-asyncio used to guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import tty
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from protocols.errors import TransportDisconnected
from protocols.mcugw.session import BootloaderSession
from protocols.transport import SerialTransport, Transport, open_transport
from tests.sim_harness import running_sim


async def test_bytes_that_arrive_unread_come_back_in_order(pty_pair: tuple[int, Transport]) -> None:
    master, transport = pty_pair
    pieces = [bytes([i]) * 100 for i in range(1, 9)]
    for piece in pieces:
        os.write(master, piece)
    got = b""
    async with asyncio.timeout(5):
        while len(got) < 800:
            got += await transport.read()
    assert got == b"".join(pieces)


async def test_a_write_larger_than_the_pty_buffer_arrives_whole(
    pty_pair: tuple[int, Transport],
) -> None:
    master, transport = pty_pair
    data = random.Random(3).randbytes(300_000)  # several times a pty's buffer
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    received = bytearray()
    done = asyncio.Event()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            received.extend(os.read(master, 65536))
        if len(received) >= len(data):
            done.set()

    loop.add_reader(master, drain)
    try:
        async with asyncio.timeout(10):
            await transport.write(data)
            await done.wait()
    finally:
        loop.remove_reader(master)
    assert bytes(received) == data


async def test_the_far_end_closing_is_a_disconnect_with_a_plain_reason() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    transport = await open_transport(os.ttyname(slave), 115200)
    try:
        os.close(master)
        async with asyncio.timeout(5):
            with pytest.raises(TransportDisconnected, match="other end of the port closed"):
                await transport.read()
        # Later reads fail the same way instead of hanging.
        async with asyncio.timeout(5):
            with pytest.raises(TransportDisconnected):
                await transport.read()
    finally:
        await transport.close()
        with contextlib.suppress(OSError):
            os.close(slave)


async def _timed_out_read(transport: Transport, seconds: float = 0.05) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await transport.read()


def _wait_readable(fd: int) -> None:
    """Bounded wait until the kernel holds bytes for ``fd``."""
    assert select.select([fd], [], [], 5)[0], "pty delivered nothing within 5 s"


async def test_a_read_cancelled_by_a_timeout_is_no_hang_up_later(
    pty_pair: tuple[int, Transport],
) -> None:
    """Issue 17 item 3: the second read after a timed-out one got a false hang-up.

    The cancelled read left the fd watched; the next read took the bytes itself
    while the readable callback was queued in the same loop pass, and that
    callback's empty read was taken for the far end closing.
    """
    master, transport = pty_pair
    await _timeout_then_data(master, transport, b"hello", b"world")


async def _timeout_then_data(
    master: int, transport: Transport, first: bytes, second: bytes
) -> None:
    await _timed_out_read(transport)
    os.write(master, first)
    _wait_readable(transport._fd)  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # the loop sees the fd readable in the pass the task runs
    async with asyncio.timeout(5):
        assert await transport.read() == first
    asyncio.get_running_loop().call_later(0.05, os.write, master, second)
    async with asyncio.timeout(5):
        assert await transport.read() == second


async def test_bytes_survive_many_timed_out_reads_in_order(
    pty_pair: tuple[int, Transport],
) -> None:
    """Reads timing out at random against bytes arriving at random: nothing lost or false."""
    master, transport = pty_pair
    rng = random.Random(17)
    loop = asyncio.get_running_loop()
    sent = bytearray()
    due = 0.0
    for _ in range(200):
        piece = rng.randbytes(rng.randint(1, 300))
        sent += piece
        due += rng.random() * 0.004
        loop.call_later(due, os.write, master, piece)
    got = bytearray()
    async with asyncio.timeout(20):
        while len(got) < len(sent):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.random() * 0.005):
                    got += await transport.read()
    assert got == sent


async def test_a_hang_up_after_a_timed_out_read_is_still_reported() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    transport = await open_transport(os.ttyname(slave), 115200)
    try:
        await _timed_out_read(transport)
        os.close(master)
        async with asyncio.timeout(2):
            with pytest.raises(TransportDisconnected, match="other end of the port closed"):
                await transport.read()
        with pytest.raises(TransportDisconnected, match="other end of the port closed"):
            await transport.write(b"x")
    finally:
        await transport.close()
        with contextlib.suppress(OSError):
            os.close(slave)


async def test_a_pyserial_port_object_on_a_pty() -> None:
    """The transport over a ``serial.Serial`` made here: data after a timeout, then hang-up."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = serial.Serial(os.ttyname(slave), 115200, timeout=0, exclusive=True)
    transport = SerialTransport(port.port, port)
    try:
        for round_ in range(3):
            await _timeout_then_data(master, transport, b"first %d" % round_, b"next %d" % round_)
        await transport.write(b"back")
        _wait_readable(master)
        assert os.read(master, 16) == b"back"
        os.close(master)
        async with asyncio.timeout(2):
            with pytest.raises(TransportDisconnected, match="other end of the port closed"):
                await transport.read()
    finally:
        await transport.close()
        assert not port.is_open
        with contextlib.suppress(OSError):
            os.close(slave)


async def test_killing_the_simulator_is_a_prompt_hang_up(tmp_path: Path) -> None:
    """A real simulator process killed under a live session: hang-up, not a timeout."""
    with running_sim(tmp_path, "--baud", "0") as sim:
        transport = await open_transport(sim.port, 0)
        try:
            session = BootloaderSession(transport, 0)
            async with asyncio.timeout(10):
                await session.hello()
            await _timed_out_read(transport)
            sim.kill()
            async with asyncio.timeout(5):
                with pytest.raises(TransportDisconnected, match="other end of the port closed"):
                    await transport.read()
        finally:
            await transport.close()


async def test_bytes_already_in_the_kernel_are_returned_without_waiting(
    pty_pair: tuple[int, Transport],
) -> None:
    """An unwatched fd's bytes are taken by ``read`` itself: no trip through the loop."""
    master, transport = pty_pair
    os.write(master, b"ready")
    _wait_readable(transport._fd)  # type: ignore[attr-defined]
    coro = transport.read()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # one step: it returns instead of waiting on the loop
    assert done.value.value == b"ready"


async def test_a_timed_out_read_then_a_later_arrival_is_delivered_exactly_once(
    pty_pair: tuple[int, Transport],
) -> None:
    master, transport = pty_pair
    for round_ in range(3):
        await _timed_out_read(transport)
        piece = b"late %d" % round_
        os.write(master, piece)
        async with asyncio.timeout(5):
            assert await transport.read() == piece
        await _timed_out_read(transport)  # nothing left over, nothing twice


async def test_stop_and_wait_round_trips_register_the_fd_once(
    pty_pair: tuple[int, Transport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader waiting again right after an answer keeps the fd watched (no epoll_ctl per turn)."""
    master, transport = pty_pair
    assert isinstance(transport, SerialTransport)
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    add_reader, remove_reader = loop.add_reader, loop.remove_reader

    def counting_add(fd: int, cb: Callable[[], object]) -> None:
        calls.append("add")
        add_reader(fd, cb)

    def counting_remove(fd: int) -> bool:
        calls.append("remove")
        return remove_reader(fd)

    monkeypatch.setattr(loop, "add_reader", counting_add)
    monkeypatch.setattr(loop, "remove_reader", counting_remove)
    for i in range(20):
        loop.call_later(0.001, os.write, master, b"ack %d" % i)
        async with asyncio.timeout(5):
            assert await transport.read() == b"ack %d" % i
    assert calls == ["add"]

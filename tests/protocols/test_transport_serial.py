"""The serial transport on a real pseudo-terminal: bursts, back-pressure, hang-up.

The transport reads the port's fd directly (bench/README.md, "CPU per flashed
MB"), so these pin what pyserial-asyncio used to guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tty
from collections.abc import AsyncIterator

import pytest

from protocols.errors import TransportDisconnected
from protocols.transport import Transport, open_transport


@pytest.fixture
async def pty_pair() -> AsyncIterator[tuple[int, Transport]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    transport = await open_transport(os.ttyname(slave), 921600)
    try:
        yield master, transport
    finally:
        await transport.close()
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


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

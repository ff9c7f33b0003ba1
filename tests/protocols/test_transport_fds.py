"""A serial transport keeps working when its fd numbers are past select()'s FD_SETSIZE.

A gateway serving a few hundred MCUs holds ~3 fds per MCU for its hub
connections, so the serial ports it opens later get fd numbers above 1024,
where pyserial's select()-based read() fails with ValueError.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import tty

import pytest

from protocols.transport import open_transport


async def test_serial_read_and_write_with_fds_above_1024() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("fd limit too low to get fds above 1024")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers: list[int] = []
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        while not fillers or fillers[-1] < 1030:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        transport = await open_transport(os.ttyname(slave), 115200)
        try:
            os.write(master, b"hello")
            async with asyncio.timeout(5):
                got = b""
                while len(got) < 5:
                    got += await transport.read()
            assert got == b"hello"
            await transport.write(b"back")
            await asyncio.sleep(0.05)
            assert os.read(master, 16) == b"back"
        finally:
            await transport.close()
    finally:
        for fd in (*fillers, master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

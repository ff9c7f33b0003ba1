"""Fixtures for the transport tests."""

from __future__ import annotations

import contextlib
import os
import tty
from collections.abc import AsyncIterator

import pytest

from protocols.transport import Transport, open_transport


@pytest.fixture
async def pty_pair() -> AsyncIterator[tuple[int, Transport]]:
    """A raw pseudo-terminal: its master fd (the device's side) and a transport on the slave."""
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

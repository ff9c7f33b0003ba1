"""An 8E1 link opens on a pseudo-terminal (which has no parity bit) and carries bytes."""

from __future__ import annotations

import asyncio
import os
import tty

from protocols.transport import SerialSettings, is_pseudo_terminal, open_transport


async def test_even_parity_on_a_pty_opens_as_8n1_and_carries_all_byte_values() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        assert is_pseudo_terminal(path)
        assert not is_pseudo_terminal("/dev/null")
        assert not is_pseudo_terminal("/nonexistent/tty")
        transport = await open_transport(path, SerialSettings(baud=115200, parity="E"))
        try:
            await transport.write(bytes(range(256)))
            got = b""
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(5):
                while len(got) < 256:  # read off the loop: the transport writes from it
                    got += await loop.run_in_executor(None, os.read, master, 256)
            assert got == bytes(range(256))  # nothing stripped (ISTRIP) or mangled
        finally:
            await transport.close()
    finally:
        os.close(master)
        os.close(slave)

"""Transports other than a tty: socket:// (e.g. ser2net) and loop://."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re

import pytest

from protocols.errors import DeviceTimeout, PortNotFound
from protocols.mcugw.session import BootloaderSession
from protocols.transport import open_transport
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import McuDriver
from simulators.mcu.models import MODELS
from tests.net import addr


async def test_socket_url_reaches_an_mcu_behind_tcp() -> None:
    model = MODELS["vmcu-l0"]
    core = McuCore(model, Flash(model), b"\x05\x06")
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    tasks: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        driver = McuDriver(core, 0, writer.write)
        tasks.append(asyncio.create_task(driver.run()))
        try:
            while data := await reader.read(4096):
                driver.feed(data)
        finally:
            driver.stop()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, addr(7, 1), 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(30):
            transport = await open_transport(f"socket://{addr(7, 1)}:{port}", 0)
            session = BootloaderSession(transport, 0)
            image = random.Random(1).randbytes(20_000)
            result = await session.flash(image, "2.0.0")
            await transport.close()
        assert result.outcome == "confirmed"
        assert core.slot_infos()[result.slot].version == "2.0.0"
    finally:
        server.close()
        await server.wait_closed()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)


async def test_socket_url_errors_are_one_line() -> None:
    url = f"socket://{addr(7, 2)}:1"
    with pytest.raises(PortNotFound, match=f"cannot connect to {re.escape(url)}"):
        await open_transport(url)
    with pytest.raises(PortNotFound, match="expected socket://HOST:PORT"):
        await open_transport("socket://nowhere")


async def test_loop_url_echoes_so_no_bootloader_answers() -> None:
    transport = await open_transport("loop://")
    try:
        session = BootloaderSession(transport, 115200)
        with pytest.raises(DeviceTimeout, match="no answer to HELLO"):
            await session.hello(per_try=0.05, attempts=2)
    finally:
        await transport.close()

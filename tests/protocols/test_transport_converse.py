"""Stop-and-wait conversations (``converse``) on a real pseudo-terminal.

The serial transport runs a conversation from its readable callback: each
answer is judged and the next request written in the same loop pass. These
pin that nothing is sent before the answer it waits for, that a late or
missing answer is a timeout that loses nothing, and the hang-up rules the
plain ``read`` keeps (issue 17).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from protocols.errors import TransportDisconnected
from protocols.trace import WIRE_LOGGER, TracedTransport
from protocols.transport import LoopTransport, SerialTransport, Transport, converse, open_transport


class _Asks:
    """Turns: send ``?i;`` and expect ``!i;`` back, ``n`` times (the echo of it with ``echo``)."""

    def __init__(self, n: int, timeout: float = 2.0, *, echo: bool = False) -> None:
        self.n = n
        self.i = 0
        self.deadline = 0.0
        self._timeout = timeout
        self._echo = echo
        self._sent = False
        self._buf = b""

    @property
    def done(self) -> bool:
        return self.i >= self.n

    def _answer(self) -> bytes:
        return b"%c%d;" % (b"?"[0] if self._echo else b"!"[0], self.i)

    def outgoing(self) -> bytes:
        if self._sent:
            return b""
        self._sent = True
        self.deadline = asyncio.get_running_loop().time() + self._timeout
        return b"?%d;" % self.i

    def sent(self) -> None:
        pass

    def receive(self, data: bytes) -> None:
        self._buf += data
        want = self._answer()
        if len(self._buf) < len(want):
            if not want.startswith(self._buf):
                raise ValueError(f"bad answer {self._buf!r}")
            return
        if self._buf != want:
            raise ValueError(f"bad answer {self._buf!r}, expected {want!r}")
        self._buf = b""
        self.i += 1
        self._sent = False


@dataclass
class _Device:
    """The pty's far end: answers each request after ``delay`` and notes any sent too early."""

    master: int
    delay: float = 0.002
    answer: Callable[[bytes], bytes | None] = lambda req: b"!" + req[1:]
    requests: list[bytes] = field(default_factory=list)
    early: list[bytes] = field(default_factory=list)
    outstanding: bool = False
    asked: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._on_request)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)

    def _on_request(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        for req in data.split(b";")[:-1]:
            if self.outstanding:
                self.early.append(req)  # a request before the previous one's answer
            self.requests.append(req)
            self.asked.set()
            reply = self.answer(req)
            if reply is not None:
                self.outstanding = True
                asyncio.get_running_loop().call_later(self.delay, self._reply, reply + b";")

    def _reply(self, data: bytes) -> None:
        self.outstanding = False
        with contextlib.suppress(OSError):
            os.write(self.master, data)


@pytest.fixture
async def pty_link(pty_pair: tuple[int, Transport]) -> AsyncIterator[tuple[_Device, Transport]]:
    master, transport = pty_pair
    device = _Device(master)
    device.start()
    try:
        yield device, transport
    finally:
        device.stop()


async def test_each_request_goes_out_only_after_the_previous_answer(
    pty_link: tuple[_Device, Transport], monkeypatch: pytest.MonkeyPatch
) -> None:
    device, transport = pty_link
    assert isinstance(transport, SerialTransport)
    loop = asyncio.get_running_loop()
    registered: list[int] = []
    add_reader = loop.add_reader

    def counting_add_reader(fd: int, cb: Callable[[], object]) -> None:
        if fd == transport._fd:
            registered.append(fd)
        add_reader(fd, cb)

    monkeypatch.setattr(loop, "add_reader", counting_add_reader)
    turns = _Asks(40)
    async with asyncio.timeout(10):
        await converse(transport, turns)
    assert turns.i == 40
    assert device.requests == [b"?%d" % i for i in range(40)]
    assert device.early == []
    assert len(registered) == 1  # the fd stays watched through all 40 round trips


async def test_a_silent_device_times_out_and_its_late_answer_is_kept(
    pty_link: tuple[_Device, Transport],
) -> None:
    device, transport = pty_link
    device.answer = lambda req: None
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await converse(transport, _Asks(1, timeout=0.05))
    assert loop.time() - t0 >= 0.05
    os.write(device.master, b"!0;")  # the late answer
    async with asyncio.timeout(5):
        assert await transport.read() == b"!0;"
    with pytest.raises(TimeoutError):  # delivered once, not again
        async with asyncio.timeout(0.05):
            await transport.read()


async def test_a_deadline_moved_earlier_still_ends_the_wait(
    pty_link: tuple[_Device, Transport],
) -> None:
    """The timer moves only when a deadline comes earlier: a long first stage, then a short one."""
    device, transport = pty_link
    device.answer = lambda req: b"!0" if req == b"?0" else None
    turns = _Asks(2, timeout=30.0)
    first_outgoing = turns.outgoing

    def outgoing() -> bytes:
        out = first_outgoing()
        if out and turns.i == 1:
            turns.deadline = asyncio.get_running_loop().time() + 0.05
        return out

    turns.outgoing = outgoing  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await converse(transport, turns)
    assert turns.i == 1


async def test_a_bad_answer_ends_the_conversation_and_the_port_stays_usable(
    pty_link: tuple[_Device, Transport],
) -> None:
    device, transport = pty_link
    device.answer = lambda req: b"x1"
    with pytest.raises(ValueError, match="bad answer"):
        async with asyncio.timeout(5):
            await converse(transport, _Asks(3))
    device.answer = lambda req: b"!" + req[1:]
    async with asyncio.timeout(5):
        await converse(transport, _Asks(3))
    assert device.early == []


async def test_cancelling_a_conversation_loses_nothing(
    pty_link: tuple[_Device, Transport],
) -> None:
    device, transport = pty_link
    device.delay = 0.2
    task = asyncio.create_task(converse(transport, _Asks(1)))
    async with asyncio.timeout(5):
        await device.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        assert await transport.read() == b"!0;"  # the answer that came after the cancel
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.read()


async def test_a_hang_up_mid_conversation_is_a_disconnect() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    transport = await open_transport(os.ttyname(slave), 115200)
    device = _Device(master, answer=lambda req: None)
    device.start()
    try:
        task = asyncio.create_task(converse(transport, _Asks(2)))
        async with asyncio.timeout(5):
            await device.asked.wait()
        device.stop()
        os.close(master)
        with pytest.raises(TransportDisconnected, match="other end of the port closed"):
            async with asyncio.timeout(5):
                await task
    finally:
        await transport.close()
        with contextlib.suppress(OSError):
            os.close(slave)


async def test_a_conversation_over_a_plain_transport_uses_read_and_write() -> None:
    transport = LoopTransport()  # echoes: the answer to "?i;" is "?i;"
    turns = _Asks(5, echo=True)
    async with asyncio.timeout(5):
        await converse(transport, turns)
    assert turns.i == 5
    await transport.close()


async def test_a_traced_conversation_logs_both_directions(
    pty_link: tuple[_Device, Transport], caplog: pytest.LogCaptureFixture
) -> None:
    _, transport = pty_link
    traced = TracedTransport(transport, "P")
    with caplog.at_level(logging.DEBUG, logger=WIRE_LOGGER):
        async with asyncio.timeout(5):
            await converse(traced, _Asks(2))
    lines = [r.getMessage() for r in caplog.records if r.name == WIRE_LOGGER]
    assert lines == [
        f"P tx {b'?0;'.hex(' ')}",
        f"P rx {b'!0;'.hex(' ')}",
        f"P tx {b'?1;'.hex(' ')}",
        f"P rx {b'!1;'.hex(' ')}",
    ]

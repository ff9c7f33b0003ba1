"""Async byte links to an MCU. No protocol logic lives here.

``open_transport(url)`` understands a serial device path (opened and configured
by pyserial, then its file descriptor watched by the event loop directly),
``socket://host:port`` (TCP, e.g. a ser2net bridge) and ``loop://`` (in-memory
echo, for tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from protocols.errors import PortNotFound, TransportDisconnected

if TYPE_CHECKING:
    import serial

_READ_SIZE = 65536
#: Unsent bytes beyond which ``write`` waits for the port to drain.
_WRITE_HIGH_WATER = 65536


class Transport(Protocol):
    """A full-duplex byte pipe. ``read`` waits for at least one byte."""

    name: str

    async def write(self, data: bytes) -> None: ...

    async def read(self) -> bytes: ...

    def set_baud(self, baud: int) -> None: ...

    async def close(self) -> None: ...


class Turns(Protocol):
    """A stop-and-wait conversation, sans-I/O: what to send, and each answer decides the next.

    ``outgoing`` returns the bytes to send now (b"" while an answer is still
    incomplete) and sets ``deadline`` (event-loop time) for their answer;
    ``receive`` takes answer bytes and raises on a bad answer; ``done`` turns
    true after the last answer. Nothing is sent before the answer it waits for.
    """

    @property
    def deadline(self) -> float: ...

    @property
    def done(self) -> bool: ...

    def outgoing(self) -> bytes: ...

    def receive(self, data: bytes) -> None: ...

    def sent(self) -> None:
        """The last ``outgoing`` bytes went out: prepare what follows while the answer comes."""
        ...


@runtime_checkable
class Conversant(Protocol):
    """A transport that runs :class:`Turns` itself (:class:`SerialTransport`)."""

    async def converse(self, turns: Turns) -> None: ...


async def converse(transport: Transport, turns: Turns) -> None:
    """Run ``turns`` to the end over ``transport``; TimeoutError when an answer is late.

    A :class:`Conversant` transport runs them from its readable callback; any
    other is driven through ``write`` and ``read`` here.
    """
    if isinstance(transport, Conversant):
        await transport.converse(turns)
        return
    while not turns.done:
        out = turns.outgoing()
        if out:
            await transport.write(out)
            turns.sent()
        async with asyncio.timeout_at(turns.deadline):
            data = await transport.read()
        turns.receive(data)


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings a bootloader protocol needs; ours is 8N1, the STM32 ROM loader 8E1."""

    baud: int = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


@runtime_checkable
class ModemLines(Protocol):
    """A link with DTR and RTS, which boards wire to RESET and BOOT0."""

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> bool:
        """Drive the lines given; False if this link has no modem lines (a pty, a socket)."""
        ...


class StreamTransport:
    """Transport over an asyncio stream pair (serial device or TCP socket)."""

    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.name = name
        self._reader = reader
        self._writer = writer

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise TransportDisconnected(f"{self.name}: port closed")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise TransportDisconnected(f"{self.name}: write failed: {exc}") from exc

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(_READ_SIZE)
        except (ConnectionError, OSError) as exc:
            if "returned no data" in str(exc) or "device reports error" in str(exc):
                # pyserial's wording for a hung-up tty (POLLHUP, or "multiple access?")
                # hides that it is nearly always the far end going away.
                raise TransportDisconnected(
                    f"{self.name}: the other end of the port closed (MCU unplugged or off)"
                ) from exc
            raise TransportDisconnected(f"{self.name}: read failed: {exc}") from exc
        if not data:
            raise TransportDisconnected(f"{self.name}: port closed by the other end")
        return data

    def set_baud(self, baud: int) -> None:
        serial = self._writer.transport.get_extra_info("serial")
        if serial is not None:
            serial.baudrate = baud

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> bool:
        serial = self._writer.transport.get_extra_info("serial")
        if serial is None:
            return False
        try:
            if dtr is not None:
                serial.dtr = dtr
            if rts is not None:
                serial.rts = rts
        except OSError:
            return False  # a pseudo-terminal has no modem-control ioctls
        return True

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class SerialTransport:
    """A serial port's file descriptor on the event loop, read in large chunks.

    pyserial opens, locks and configures the port (and later changes its baud
    rate and modem lines); the bytes bypass its per-call poll() and
    pyserial-asyncio's buffering layers. Everything that arrived since the last
    ``read`` is returned at once, so a burst of acknowledgements costs one
    wake-up, and a write goes straight to the fd when the port can take it.

    Every byte goes through ``_rx``: the fd's readable callback and ``read``
    itself (when the fd is not watched, bytes may wait in the kernel) append to
    it, and ``read`` returns what it holds, so cancelling a ``read`` (a timeout)
    loses nothing and leaves nothing stale. A hang-up is decided from what the
    kernel reports (EIO, or POLLHUP/POLLERR), never from an empty read: with
    VMIN=0 a tty read of nothing returns b"" whether or not the far end is there.

    The fd stays registered while a reader waits, so a stop-and-wait exchange
    (the STM32 ROM loader's ACK per stage) costs no epoll_ctl per round trip;
    bytes that arrive while nobody waits unregister it, so a busy session's
    acknowledgements stay in the kernel and the next ``read`` takes them all
    with one read(2), without a wake-up.
    """

    def __init__(self, name: str, port: serial.Serial) -> None:
        self.name = name
        self._port = port
        self._fd: int = port.fd
        self._loop = asyncio.get_running_loop()
        self._rx = bytearray()
        self._rx_error: TransportDisconnected | None = None
        self._rx_waiter: asyncio.Future[None] | None = None
        self._watching = False  # the fd is registered for reading
        self._tx = bytearray()
        self._tx_waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._turns: Turns | None = None
        self._turns_done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._hup_poll = select.poll()
        self._hup_poll.register(self._fd, select.POLLIN)
        os.set_blocking(self._fd, False)

    # ------------------------------------------------------------ reading

    def _take(self) -> bytes:
        """Move what the kernel holds into ``_rx``; b"" if it held nothing (or failed)."""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            # EIO: a pty whose other side closed, or a USB adapter unplugged.
            self._fail(self._hangup_error() if exc.errno == errno.EIO else
                       TransportDisconnected(f"{self.name}: read failed: {exc}"))  # fmt: skip
            return b""
        self._rx += data
        return data

    def _on_readable(self) -> None:
        """The fd's readable callback."""
        if not self._take():
            if self._rx_error is None and self._hung_up():
                self._fail(self._hangup_error())
            return  # readable a moment ago, drained since: nothing to report
        if self._turns is not None:
            self._step()
            return
        waiter = self._rx_waiter
        if waiter is not None and not waiter.done():
            # A reader waits: it takes these bytes in a moment and, in a
            # stop-and-wait exchange, waits again right after; keep the fd watched.
            waiter.set_result(None)
        else:
            # Nobody waits: what lands while the session is busy (or pacing
            # itself) stays in the kernel and costs no wake-up; the next read()
            # takes it all with one read(2).
            self._unwatch()

    def _hung_up(self) -> bool:
        events = self._hup_poll.poll(0)
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events)

    def _watch(self) -> None:
        if not self._watching:
            self._watching = True
            self._loop.add_reader(self._fd, self._on_readable)

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    def _hangup_error(self) -> TransportDisconnected:
        return TransportDisconnected(
            f"{self.name}: the other end of the port closed (MCU unplugged or off)"
        )

    def _fail(self, error: TransportDisconnected) -> None:
        if self._rx_error is None:
            self._rx_error = error
        self._unwatch()
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._rx_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._turns is not None:
            self._end_turns(self._rx_error or TransportDisconnected(f"{self.name}: port closed"))

    # ------------------------------------------------------------ conversations

    async def converse(self, turns: Turns) -> None:
        """Run ``turns`` from the readable callback.

        Each answer is judged and the next bytes written in the loop pass the
        answer arrives in: no future, task wake-up or timer per round trip, so a
        stop-and-wait protocol's host latency is one callback. One timer watches
        the deadlines; it is only moved when a deadline comes earlier.
        """
        if self._turns is not None or self._rx_waiter is not None:
            raise RuntimeError(f"{self.name}: one reader at a time")
        if self._rx_error is not None:
            raise self._rx_error
        if self._closed:
            raise TransportDisconnected(f"{self.name}: port closed")
        if turns.done:
            return
        done = self._turns_done = self._loop.create_future()
        self._turns = turns
        try:
            self._watch()
            self._send(turns.outgoing())
            if self._turns is turns:
                self._arm(turns.deadline)
                turns.sent()
                if self._rx:
                    self._step()  # bytes that came before: the answer judges them
            await done
        finally:
            if self._turns is turns:
                self._turns = None
                self._turns_done = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _step(self) -> None:
        """Feed what arrived to the conversation and send what it says next."""
        turns = self._turns
        assert turns is not None
        data = bytes(self._rx)
        self._rx.clear()
        try:
            turns.receive(data)
            if turns.done:
                self._end_turns(None)
                return
            out = turns.outgoing()
        except Exception as exc:  # the answer's verdict (Nack, a bad reply ...): the caller's
            self._end_turns(exc)
            return
        if out:
            self._send(out)
            self._arm(turns.deadline)
            try:
                turns.sent()
            except Exception as exc:  # building the next request failed: the caller's
                self._end_turns(exc)

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first and then waits on for the later deadline
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        turns = self._turns
        if turns is None:
            return
        if self._loop.time() >= turns.deadline:
            self._end_turns(TimeoutError())
        else:
            self._timer = self._loop.call_at(turns.deadline, self._on_timer)

    def _end_turns(self, error: BaseException | None) -> None:
        done = self._turns_done
        self._turns = None
        self._turns_done = None
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def _send(self, data: bytes) -> None:
        """A conversation's write: a failure ends the conversation."""
        try:
            self._put(data)
        except TransportDisconnected as exc:
            self._end_turns(exc)

    async def read(self) -> bytes:
        if self._turns is not None:
            raise RuntimeError(f"{self.name}: one reader at a time")
        if not self._rx and not self._watching and not self._closed and self._rx_error is None:
            # Unwatched, bytes may already wait in the kernel: take them without
            # a trip through the event loop. An empty read here means nothing yet.
            self._take()
        while not self._rx:
            if self._rx_error is not None:
                raise self._rx_error
            if self._closed:
                raise TransportDisconnected(f"{self.name}: port closed")
            self._watch()
            waiter = self._rx_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                if self._rx_waiter is waiter:
                    self._rx_waiter = None
        data = bytes(self._rx)
        self._rx.clear()
        return data

    # ------------------------------------------------------------ writing

    def _put(self, data: bytes) -> None:
        """Write now what the port takes and queue the rest (behind anything queued)."""
        if not data:
            return
        if self._tx:
            self._tx += data
            return
        try:
            n = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            raise self._write_error(exc) from exc
        if n < len(data):
            self._tx += data[n:]
            self._loop.add_writer(self._fd, self._on_writable)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportDisconnected(f"{self.name}: port closed")
        self._put(data)
        while len(self._tx) > _WRITE_HIGH_WATER and not self._closed:
            self._tx_waiter = self._loop.create_future()
            try:
                await self._tx_waiter
            finally:
                self._tx_waiter = None
        if self._rx_error is not None and self._tx:
            raise self._rx_error

    def _write_error(self, exc: OSError) -> TransportDisconnected:
        if exc.errno == errno.EIO:
            return self._hangup_error()
        return TransportDisconnected(f"{self.name}: write failed: {exc}")

    def _on_writable(self) -> None:
        try:
            n = os.write(self._fd, self._tx)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._tx.clear()
            self._loop.remove_writer(self._fd)
            self._fail(self._write_error(exc))
            n = 0
        del self._tx[:n]
        if not self._tx:
            self._loop.remove_writer(self._fd)
        if len(self._tx) <= _WRITE_HIGH_WATER // 2:
            waiter = self._tx_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ line control

    def set_baud(self, baud: int) -> None:
        self._port.baudrate = baud

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> bool:
        try:
            if dtr is not None:
                self._port.dtr = dtr
            if rts is not None:
                self._port.rts = rts
        except OSError:
            return False  # a pseudo-terminal has no modem-control ioctls
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self._loop.remove_writer(self._fd)
        self._wake_reader()
        if self._tx_waiter is not None and not self._tx_waiter.done():
            self._tx_waiter.set_result(None)
        with contextlib.suppress(Exception):
            self._hup_poll.unregister(self._fd)
        with contextlib.suppress(Exception):
            self._port.close()


class LoopTransport:
    """In-memory echo, like pyserial's ``loop://``: what is written is read back."""

    def __init__(self) -> None:
        self.name = "loop://"
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportDisconnected("loop:// closed")
        self._queue.put_nowait(data)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if not data:
            raise TransportDisconnected("loop:// closed")
        return data

    def set_baud(self, baud: int) -> None:
        pass

    async def close(self) -> None:
        self._closed = True
        self._queue.put_nowait(b"")


async def open_transport(url: str, baud: int | SerialSettings = 115200) -> Transport:
    """Open a link; raises :class:`PortNotFound` with a one-line reason on failure."""
    settings = baud if isinstance(baud, SerialSettings) else SerialSettings(baud=baud)
    if url.startswith("loop://"):
        return LoopTransport()
    if url.startswith("socket://"):
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise PortNotFound(f"bad socket URL {url!r}: expected socket://HOST:PORT")
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        except OSError as exc:
            raise PortNotFound(f"cannot connect to {url}: {exc.strerror or exc}") from exc
        return StreamTransport(url, reader, writer)
    return await _open_serial(url, settings)


#: Linux majors of Unix98 pseudo-terminal slaves (/dev/pts/N).
_PTY_MAJORS = range(136, 144)


def is_pseudo_terminal(path: str) -> bool:
    """True for a pty slave (e.g. a simulator's port), which has no parity bit to set."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in _PTY_MAJORS


async def _open_serial(path: str, settings: SerialSettings) -> Transport:
    import serial

    parity = settings.parity
    if parity != "N" and is_pseudo_terminal(path):
        parity = "N"  # a pty carries bytes, not bits: Linux refuses PARENB on one (EINVAL)

    try:
        port = serial.Serial(
            path,
            baudrate=settings.baud or 115200,
            parity=parity,
            stopbits=settings.stopbits,
            exclusive=True,
            timeout=0,
        )
    except serial.SerialException as exc:
        cause = exc.__context__ if isinstance(exc.__context__, OSError) else None
        if cause is not None and cause.strerror:
            raise PortNotFound(f"cannot open serial port {path}: {cause.strerror}") from exc
        raise PortNotFound(f"cannot open serial port {path}: {exc}") from exc
    except OSError as exc:
        raise PortNotFound(f"cannot open serial port {path}: {exc.strerror or exc}") from exc
    return SerialTransport(path, port)

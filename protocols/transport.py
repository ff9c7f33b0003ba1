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

    One callback, registered by the transport, is the only reader of the fd and
    feeds ``_rx``; ``read`` only takes from that buffer and waits on a signal, so
    cancelling a ``read`` (a timeout) loses nothing and leaves nothing stale. A
    hang-up is decided from what the kernel reports (EIO, or POLLHUP/POLLERR),
    never from an empty read: with VMIN=0 a tty read of nothing returns b""
    whether or not the far end is there.
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
        self._hup_poll = select.poll()
        self._hup_poll.register(self._fd, select.POLLIN)
        os.set_blocking(self._fd, False)

    # ------------------------------------------------------------ reading

    def _on_readable(self) -> None:
        """The fd's one reader: move what the kernel holds into ``_rx``."""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # EIO: a pty whose other side closed, or a USB adapter unplugged.
            self._fail(self._hangup_error() if exc.errno == errno.EIO else
                       TransportDisconnected(f"{self.name}: read failed: {exc}"))  # fmt: skip
            return
        if not data:
            if self._hung_up():
                self._fail(self._hangup_error())
            return  # readable a moment ago, drained since: nothing to report
        self._rx += data
        # Bytes now wait for the reader: stop watching, so what lands while the
        # session is busy (or pacing itself) stays in the kernel and costs no
        # wake-up; the next read() picks it all up in one call.
        self._unwatch()
        self._wake_reader()

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

    async def read(self) -> bytes:
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

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportDisconnected(f"{self.name}: port closed")
        if not self._tx:
            try:
                n = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                raise self._write_error(exc) from exc
            if n == len(data):
                return
            self._tx += data[n:]
            self._loop.add_writer(self._fd, self._on_writable)
        else:
            self._tx += data
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

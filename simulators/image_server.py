"""A test HTTP(S) image server on loopback, with Range support and fault injection.

Tests and ``mcu-gateway demo`` serve packages from it::

    async with ImageServer("127.0.3.1", ssl_context=pki.server_context()) as srv:
        srv.add("app.fwpkg", data)
        srv.queue_faults("app.fwpkg", Fault(drop_after=1000))  # the next request drops
        url = srv.url("app.fwpkg", tls=True)

Faults are consumed one per request, in order; after the queue is empty the
file's standing fault (``set_fault``) applies. The server counts requests and
body bytes per file so tests can assert how much was actually transferred.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")


@dataclass(frozen=True)
class Fault:
    drop_after: int | None = None  # close the connection after this many body bytes
    delay_s: float = 0.0  # pause before every chunk: a slow server
    length_delta: int = 0  # announce a Content-Length off by this many bytes
    corrupt: bool = False  # serve different bytes (one byte flipped mid-file)
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    endless: bool = False  # a chunked body that never ends (until the client goes away)


NO_FAULT = Fault()


@dataclass
class FileStats:
    requests: int = 0  # GETs for this file
    bytes_sent: int = 0  # body bytes written, summed over requests
    ranges: list[str | None] = field(default_factory=list)  # Range header of each request
    active: int = 0  # requests being answered right now


@dataclass
class _File:
    data: bytes
    etag: str
    standing: Fault = NO_FAULT
    queued: deque[Fault] = field(default_factory=deque)
    stats: FileStats = field(default_factory=FileStats)

    def next_fault(self) -> Fault:
        return self.queued.popleft() if self.queued else self.standing


class ImageServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        chunk_size: int = 16 * 1024,
    ) -> None:
        self.host = host
        self._ssl = ssl_context
        self._chunk = chunk_size
        self._files: dict[str, _File] = {}
        self._runner: web.AppRunner | None = None
        self._answered = asyncio.Condition()  # notified whenever a request ends
        self.http_port = 0
        self.https_port = 0

    def add(self, name: str, data: bytes) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"file name {name!r} must be one path segment")
        self._files[name] = _File(data, f'"{hashlib.sha256(data).hexdigest()[:32]}"')

    def set_fault(self, name: str, fault: Fault) -> None:
        self._files[name].standing = fault

    def queue_faults(self, name: str, *faults: Fault) -> None:
        self._files[name].queued.extend(faults)

    def stats(self, name: str) -> FileStats:
        return self._files[name].stats

    async def wait_idle(self, name: str, within: float) -> None:
        """Wait until no request for ``name`` is being answered (a client gone, a body done)."""
        stats = self._files[name].stats
        async with asyncio.timeout(within), self._answered:
            await self._answered.wait_for(lambda: stats.active == 0)

    def url(self, name: str, *, tls: bool = False) -> str:
        if tls:
            if not self.https_port:
                raise RuntimeError("server was started without an ssl_context")
            return f"https://{self.host}:{self.https_port}/{name}"
        return f"http://{self.host}:{self.http_port}/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self.http_port = await self._listen(None)
        if self._ssl is not None:
            self.https_port = await self._listen(self._ssl)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ImageServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _listen(self, ctx: ssl.SSLContext | None) -> int:
        assert self._runner is not None
        # Bind our own socket so port 0 works and we can read the port back.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        site = web.SockSite(self._runner, sock, ssl_context=ctx)
        await site.start()
        port: int = sock.getsockname()[1]
        return port

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        entry = self._files.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        fault = entry.next_fault()
        entry.stats.requests += 1
        entry.stats.ranges.append(request.headers.get("Range"))
        data = entry.data
        if fault.corrupt and data:
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0xFF
            data = bytes(flipped)
        resp = web.StreamResponse(headers={"Accept-Ranges": "bytes", "ETag": entry.etag})
        start = self._range_start(request, entry, fault)
        if start is not None:
            if start >= len(data):
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={"Content-Range": f"bytes */{len(data)}"}
                )
            resp.set_status(206)
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data = data[start:]
        if fault.endless:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = max(0, len(data) + fault.length_delta)
        await resp.prepare(request)
        entry.stats.active += 1
        try:
            await self._send_body(request, resp, entry.stats, data, fault)
        except ConnectionError:
            return resp  # the client went away; nothing left to do
        finally:
            entry.stats.active -= 1
            async with self._answered:
                self._answered.notify_all()
        return resp

    def _range_start(self, request: web.Request, entry: _File, fault: Fault) -> int | None:
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if match is None or fault.ignore_range or match.group(2):
            return None  # only the open-ended "bytes=N-" form that resumes use
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != entry.etag:
            return None  # the file changed since the client's first request: send it all
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > len(str(len(entry.data))):
            # Past the end however long it is (and never int() of 5,000 digits,
            # which Python refuses with ValueError): 416, RFC 9110 §15.5.17.
            return len(entry.data)
        return int(digits)

    async def _send_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        stats: FileStats,
        data: bytes,
        fault: Fault,
    ) -> None:
        if fault.endless:
            # Until the client hangs up: writing on into a dead socket only fills logs.
            # A write into a reset TLS socket may be dropped without suspending, so
            # yield each time to let the loop notice that the connection is gone.
            while request.transport is not None and not request.transport.is_closing():
                await self._write(resp, stats, os.urandom(self._chunk), fault)
                await asyncio.sleep(0)
            raise ConnectionResetError("the client went away")
        limit = len(data) if fault.drop_after is None else min(len(data), fault.drop_after)
        if fault.length_delta < 0:
            limit = min(limit, len(data) + fault.length_delta)
        for at in range(0, limit, self._chunk):
            await self._write(resp, stats, data[at : min(at + self._chunk, limit)], fault)
        if limit < len(data) or fault.length_delta > 0:
            # Close after flushing what was written: the client sees a short body.
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("fault: connection dropped")
        await resp.write_eof()

    async def _write(
        self, resp: web.StreamResponse, stats: FileStats, chunk: bytes, fault: Fault
    ) -> None:
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        await resp.write(chunk)
        stats.bytes_sent += len(chunk)

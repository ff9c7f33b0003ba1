from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from yarl import URL

from simulators.image_server import Fault, ImageServer
from simulators.image_tls import LoopbackPki, make_test_pki
from tests.net import addr

HOST = addr(3, 2)
DATA = os.urandom(100_000)


@pytest.fixture(scope="module")
def pki() -> LoopbackPki:
    return make_test_pki(HOST)


@pytest.fixture
async def server(pki: LoopbackPki) -> AsyncIterator[ImageServer]:
    async with ImageServer(HOST, ssl_context=pki.server_context(), chunk_size=4096) as srv:
        srv.add("f.bin", DATA)
        yield srv


@pytest.fixture
async def client(pki: LoopbackPki) -> AsyncIterator[aiohttp.ClientSession]:
    ctx = ssl.create_default_context(cadata=pki.ca_pem.decode())
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx), auto_decompress=False
        ) as session,
        asyncio.timeout(10),
    ):
        yield session


async def _get(
    client: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, Mapping[str, str], bytes]:
    async with client.get(url, headers=headers) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def _read_into(client: aiohttp.ClientSession, url: str, received: bytearray) -> None:
    async with client.get(url) as resp:
        async for chunk in resp.content.iter_any():
            received += chunk


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_serves_whole_file(
    server: ImageServer, client: aiohttp.ClientSession, tls: bool
) -> None:
    status, headers, body = await _get(client, server.url("f.bin", tls=tls))
    assert (status, body) == (200, DATA)
    assert headers["Accept-Ranges"] == "bytes"
    assert server.stats("f.bin").requests == 1
    assert server.stats("f.bin").bytes_sent == len(DATA)


async def test_range_and_if_range(server: ImageServer, client: aiohttp.ClientSession) -> None:
    url = server.url("f.bin", tls=True)
    status, headers, body = await _get(client, url, Range="bytes=1000-")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA)}"
    assert body == DATA[1000:]
    status, _, body = await _get(client, url, Range="bytes=10-", **{"If-Range": headers["ETag"]})
    assert (status, body) == (206, DATA[10:])
    status, _, body = await _get(client, url, Range="bytes=10-", **{"If-Range": '"stale"'})
    assert (status, body) == (200, DATA)
    status, _, _ = await _get(client, url, Range=f"bytes={len(DATA)}-")
    assert status == 416
    assert server.stats("f.bin").ranges[0] == "bytes=1000-"


async def test_unknown_file_is_404(server: ImageServer, client: aiohttp.ClientSession) -> None:
    status, _, _ = await _get(client, server.url("nope.bin"))
    assert status == 404


async def test_drop_after_n_bytes(server: ImageServer, client: aiohttp.ClientSession) -> None:
    server.queue_faults("f.bin", Fault(drop_after=5000))
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        await _read_into(client, server.url("f.bin", tls=True), received)
    assert bytes(received) == DATA[:5000]
    assert server.stats("f.bin").bytes_sent == 5000
    # The queue is consumed: the next request is served normally.
    assert (await _get(client, server.url("f.bin", tls=True)))[2] == DATA


async def test_ignore_range_answers_200(server: ImageServer, client: aiohttp.ClientSession) -> None:
    server.set_fault("f.bin", Fault(ignore_range=True))
    status, _, body = await _get(client, server.url("f.bin"), Range="bytes=50-")
    assert (status, body) == (200, DATA)


async def test_different_bytes_and_short_length(
    server: ImageServer, client: aiohttp.ClientSession
) -> None:
    server.queue_faults("f.bin", Fault(corrupt=True), Fault(length_delta=-7))
    _, _, body = await _get(client, server.url("f.bin"))
    assert len(body) == len(DATA)
    assert sum(a != b for a, b in zip(body, DATA, strict=True)) == 1
    _, headers, body = await _get(client, server.url("f.bin"))
    assert body == DATA[:-7]
    assert headers["Content-Length"] == str(len(DATA) - 7)


async def test_long_announced_length_then_close(
    server: ImageServer, client: aiohttp.ClientSession
) -> None:
    server.queue_faults("f.bin", Fault(length_delta=+10))
    with pytest.raises(aiohttp.ClientPayloadError):
        await _get(client, server.url("f.bin"))


async def test_slow_and_endless(server: ImageServer, client: aiohttp.ClientSession) -> None:
    server.queue_faults("f.bin", Fault(delay_s=0.2))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await _get(client, server.url("f.bin"))
    server.queue_faults("f.bin", Fault(endless=True))
    got = 0
    async with client.get(server.url("f.bin")) as resp:
        assert resp.content_length is None
        async for chunk in resp.content.iter_any():
            got += len(chunk)
            if got > 3 * len(DATA):
                break
    assert got > len(DATA)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_endless_body_stops_when_the_client_dies(
    server: ImageServer, pki: LoopbackPki, tls: bool
) -> None:
    # A client killed mid-body: its socket is reset, writes to it fail at once.
    server.queue_faults("f.bin", Fault(endless=True))
    url = URL(server.url("f.bin", tls=tls))
    ctx = ssl.create_default_context(cadata=pki.ca_pem.decode()) if tls else None
    reader, writer = await asyncio.open_connection(url.host, url.port, ssl=ctx)
    writer.write(f"GET {url.path} HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode())
    await reader.readexactly(64 * 1024)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    writer.transport.abort()
    await server.wait_idle("f.bin", within=5)
    sent = server.stats("f.bin").bytes_sent
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx or False)) as client:
        assert (await _get(client, str(url)))[2] == DATA  # the server still serves
    assert server.stats("f.bin").bytes_sent == sent + len(DATA)  # nothing else was written


async def test_a_range_of_5000_digits_is_416_not_500(
    server: ImageServer, client: aiohttp.ClientSession
) -> None:
    url = server.url("f.bin")
    status, headers, _ = await _get(client, url, Range="bytes=" + "9" * 5000 + "-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(DATA)}"
    # Leading zeros are still the number they spell.
    status, _, body = await _get(client, url, Range="bytes=" + "0" * 5000 + "10-")
    assert (status, body) == (206, DATA[10:])
    status, _, body = await _get(client, url)
    assert (status, body) == (200, DATA)  # still serving

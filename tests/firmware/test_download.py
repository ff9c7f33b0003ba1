from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.download import Downloader
from firmware.errors import DownloadError, DownloadTimeout
from firmware.reasons import ReasonCode
from protocols.backoff import FULL_JITTER, Backoff, RetryPolicy
from simulators.image_server import Fault, ImageServer

FAST_RETRY = RetryPolicy(4, Backoff(0.005, 0.02, FULL_JITTER))
ONE_TRY = RetryPolicy(1, Backoff(0.005, 0.02))
SIZE = 256 * 1024
MB = 1 << 20


@pytest.fixture
def blob() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _downloader(
    tmp_path: Path, ca_file: Path | None, *, allow_http: bool = False, max_cache: int = 8 * MB
) -> Downloader:
    return Downloader(
        tmp_path / "cache",
        max_cache,
        ca_file=ca_file,
        allow_http=allow_http,
        retry=FAST_RETRY,
        rng=random.Random(7),
    )


def _cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def _get(
    tmp_path: Path, ca_file: Path | None, url: str, digest: str, *, allow_http: bool = False
) -> bytes:
    dl = _downloader(tmp_path, ca_file, allow_http=allow_http)
    async with dl, asyncio.timeout(10), dl.fetch(url, digest, max_size=MB, deadline_s=10) as path:
        return path.read_bytes()


async def _fail(
    tmp_path: Path, ca_file: Path | None, url: str, digest: str, *, deadline_s: float = 10
) -> DownloadError:
    """Fetch ``url`` expecting a DownloadError; returns it for the caller to inspect."""
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):
        with pytest.raises(DownloadError) as exc:
            async with dl.fetch(url, digest, max_size=MB, deadline_s=deadline_s):
                pass
    return exc.value


async def test_https_download_with_custom_ca(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    seen: list[tuple[int, int | None]] = []
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):
        async with dl.fetch(
            image_server.url("app.fwpkg", tls=True),
            digest.upper(),
            max_size=MB,
            deadline_s=10,
            progress=lambda d, t: seen.append((d, t)),
        ) as path:
            assert path.read_bytes() == blob
            assert path.name == digest  # named by content, never by URL
        assert seen[-1] == (SIZE, SIZE)
        # A second fetch is a cache hit: no new request reaches the server.
        async with dl.fetch(
            "https://unused.invalid/x", digest, max_size=MB, deadline_s=10
        ) as again:
            assert again == path
    assert image_server.stats("app.fwpkg").requests == 1


async def test_unknown_ca_fails_fast(
    tmp_path: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    error = await _fail(
        tmp_path, None, image_server.url("app.fwpkg", tls=True), digest, deadline_s=10
    )
    assert isinstance(error, DownloadError)
    assert error.reason is ReasonCode.DOWNLOAD_UNTRUSTED
    assert not error.reason.kind.transient  # the gateway does not retry it either
    assert "TLS" in error.message
    assert image_server.stats("app.fwpkg").requests == 0


@pytest.mark.parametrize("url", ["http://127.0.3.1:1/a", "file:///etc/passwd", "ftp://h/a"])
async def test_schemes_refused(tmp_path: Path, url: str, digest: str) -> None:
    async with _downloader(tmp_path, None) as dl:
        with pytest.raises(DownloadError) as exc:
            async with dl.fetch(url, digest, max_size=MB, deadline_s=5):
                pass
    assert exc.value.reason is ReasonCode.URL_REFUSED


async def test_plain_http_when_configured(
    tmp_path: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    url = image_server.url("app.fwpkg")
    assert await _get(tmp_path, None, url, digest, allow_http=True) == blob


async def test_three_drops_resume_with_range(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    rng = random.Random(1234)
    drops = [rng.randrange(1, SIZE // 3) for _ in range(3)]
    image_server.add("app.fwpkg", blob)
    image_server.queue_faults("app.fwpkg", *(Fault(drop_after=n) for n in drops))
    data = await _get(tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest)
    assert hashlib.sha256(data).hexdigest() == digest
    stats = image_server.stats("app.fwpkg")
    assert stats.requests == 4
    assert stats.ranges[0] is None
    assert all(r is not None and r.startswith("bytes=") for r in stats.ranges[1:])
    assert stats.bytes_sent < 2 * SIZE


async def test_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.queue_faults("app.fwpkg", Fault(drop_after=SIZE // 2), Fault(ignore_range=True))
    assert await _get(tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest) == blob
    stats = image_server.stats("app.fwpkg")
    assert stats.requests == 2
    assert stats.ranges[1] == f"bytes={SIZE // 2}-"


async def test_announced_length_too_long_resumes_to_completion(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.queue_faults("app.fwpkg", Fault(length_delta=+100))
    assert await _get(tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest) == blob


async def test_ten_concurrent_fetches_one_transfer(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(delay_s=0.001))  # keep the transfer in flight
    url = image_server.url("app.fwpkg", tls=True)
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):

        async def one() -> bytes:
            async with dl.fetch(url, digest, max_size=MB, deadline_s=10) as path:
                return path.read_bytes()

        results = await asyncio.gather(*(one() for _ in range(10)))
    assert all(r == blob for r in results)
    assert image_server.stats("app.fwpkg").requests == 1


@pytest.mark.parametrize("fault", [Fault(), Fault(endless=True)], ids=["declared", "endless"])
async def test_oversize_is_cut_off_and_leaves_nothing(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str, fault: Fault
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", fault)
    accepted: list[int] = [0]
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):
        with pytest.raises(DownloadError) as exc:
            async with dl.fetch(
                image_server.url("app.fwpkg", tls=True),
                digest,
                max_size=SIZE // 2,
                deadline_s=10,
                progress=lambda done, _: accepted.append(done),
            ):
                pass
    assert exc.value.reason is ReasonCode.DOWNLOAD_TOO_LARGE
    assert "cap" in exc.value.message
    assert max(accepted) <= SIZE // 2
    assert image_server.stats("app.fwpkg").requests == 1  # a cap is final, not retried
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize(
    "fault", [Fault(corrupt=True), Fault(length_delta=-10)], ids=["different-bytes", "short-length"]
)
async def test_wrong_bytes_leave_nothing(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str, fault: Fault
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", fault)
    error = await _fail(
        tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest, deadline_s=10
    )
    assert isinstance(error, DownloadError)
    assert error.reason is ReasonCode.DOWNLOAD_HASH_MISMATCH
    assert _cache_files(tmp_path) == []


async def test_deadline(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(delay_s=0.05))
    error = await _fail(
        tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest, deadline_s=0.3
    )
    assert isinstance(error, DownloadTimeout)
    assert error.reason is ReasonCode.DOWNLOAD_TIMEOUT
    # What arrived stays, with its validator, for the next attempt to resume from.
    assert _cache_files(tmp_path) == [f"tmp/{digest}.json", f"tmp/{digest}.part"]


async def test_persistent_drops_give_up(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(drop_after=0))
    error = await _fail(
        tmp_path, ca_file, image_server.url("app.fwpkg", tls=True), digest, deadline_s=10
    )
    assert isinstance(error, DownloadError)
    assert error.reason is ReasonCode.DOWNLOAD_FAILED
    assert image_server.stats("app.fwpkg").requests == FAST_RETRY.attempts
    assert _cache_files(tmp_path) == []


async def test_file_in_use_is_not_evicted(
    tmp_path: Path, ca_file: Path, image_server: ImageServer
) -> None:
    first, second = os.urandom(SIZE), os.urandom(SIZE)
    image_server.add("a", first)
    image_server.add("b", second)
    d1, d2 = hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()
    dl = _downloader(tmp_path, ca_file, max_cache=SIZE + SIZE // 2)
    async with dl, asyncio.timeout(10):
        async with dl.fetch(
            image_server.url("a", tls=True), d1, max_size=MB, deadline_s=10
        ) as held:
            async with dl.fetch(image_server.url("b", tls=True), d2, max_size=MB, deadline_s=10):
                assert held.read_bytes() == first  # both pinned: over budget, both kept
            assert held.read_bytes() == first
        assert not held.exists() or not dl.cache.path_of(d2).exists()
        assert dl.cache.total_bytes() <= SIZE + SIZE // 2


async def test_one_caller_giving_up_does_not_cancel_the_shared_transfer(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(delay_s=0.002))
    url = image_server.url("app.fwpkg", tls=True)
    started = asyncio.Event()
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):

        async def one(progress: Callable[[int, int | None], None] | None) -> bytes:
            async with dl.fetch(url, digest, max_size=MB, deadline_s=10, progress=progress) as path:
                return path.read_bytes()

        quitter = asyncio.create_task(one(lambda done, _: started.set()))
        stayer = asyncio.create_task(one(None))
        await started.wait()
        quitter.cancel()
        assert await stayer == blob
        with pytest.raises(asyncio.CancelledError):
            await quitter
    assert image_server.stats("app.fwpkg").requests == 1


async def test_a_partial_download_resumes_with_range_after_a_restart(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    # First gateway run: the connection drops at 60 % and this run gives up (as a
    # kill -9 would stop it); the next run must fetch only the missing 40 %.
    cut = SIZE * 6 // 10
    image_server.add("app.fwpkg", blob)
    image_server.queue_faults("app.fwpkg", Fault(drop_after=cut), Fault(drop_after=0))
    url = image_server.url("app.fwpkg", tls=True)
    first = Downloader(tmp_path / "cache", 8 * MB, ca_file=ca_file,
                       retry=ONE_TRY, rng=random.Random(7))  # fmt: skip
    async with first:
        with pytest.raises(DownloadError) as failed:
            async with first.fetch(url, digest, max_size=MB, deadline_s=10):
                pass
    assert failed.value.reason is ReasonCode.DOWNLOAD_FAILED
    assert "cache/tmp/" not in str(failed.value)
    data = await _get(tmp_path, ca_file, url, digest)  # a new Downloader: a restarted gateway
    assert data == blob
    stats = image_server.stats("app.fwpkg")
    assert stats.ranges == [None, f"bytes={cut}-", f"bytes={cut}-"]
    assert stats.bytes_sent == SIZE  # every byte served once
    assert _cache_files(tmp_path) == [f"sha256/{digest}"]


async def test_a_changed_file_is_fetched_whole_not_spliced(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    newer = os.urandom(SIZE)
    image_server.add("app.fwpkg", blob)
    image_server.queue_faults("app.fwpkg", Fault(drop_after=SIZE // 2))
    url = image_server.url("app.fwpkg", tls=True)
    first = Downloader(tmp_path / "cache", 8 * MB, ca_file=ca_file,
                       retry=ONE_TRY, rng=random.Random(7))  # fmt: skip
    async with first:
        with pytest.raises(DownloadError):
            async with first.fetch(url, digest, max_size=MB, deadline_s=10):
                pass
    image_server.add("app.fwpkg", newer)  # republished: a new ETag
    new_digest = hashlib.sha256(newer).hexdigest()
    assert await _get(tmp_path, ca_file, url, new_digest) == newer
    assert image_server.stats("app.fwpkg").requests == 1  # a new file, new stats
    assert _cache_files(tmp_path) == sorted([f"sha256/{new_digest}", f"tmp/{digest}.json",
                                             f"tmp/{digest}.part"])  # fmt: skip


async def test_an_overstated_length_is_a_size_mismatch_not_too_large(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str
) -> None:
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(length_delta=+1000))
    url = image_server.url("app.fwpkg", tls=True)
    async with _downloader(tmp_path, ca_file) as dl, asyncio.timeout(10):
        with pytest.raises(DownloadError) as exc:
            async with dl.fetch(url, digest, max_size=SIZE, expected_size=SIZE, deadline_s=10):
                pass
    assert exc.value.reason is ReasonCode.DOWNLOAD_SIZE_MISMATCH
    assert f"{SIZE + 1000} bytes" in exc.value.message
    assert str(SIZE) in exc.value.message
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize(
    "secret_url",
    [
        "https://user:s3cr3t-token@{host}:{port}/app.fwpkg",
        "https://{host}:{port}/app.fwpkg?sv=2022-11-02&se=2030-01-01&sp=r&sig=s3cr3t%2Bsig",
    ],
    ids=["userinfo", "sas"],
)
async def test_errors_never_show_url_secrets(
    tmp_path: Path, ca_file: Path, image_server: ImageServer, blob: bytes, digest: str,
    secret_url: str,
) -> None:  # fmt: skip
    image_server.add("app.fwpkg", blob)
    image_server.set_fault("app.fwpkg", Fault(drop_after=0))
    host, port = image_server.host, image_server.https_port
    error = await _fail(tmp_path, ca_file, secret_url.format(host=host, port=port), digest)
    assert error.reason is ReasonCode.DOWNLOAD_FAILED
    assert f"{host}:{port}/app.fwpkg" in error.message
    assert "s3cr3t" not in error.message and "sig=" not in error.message
    assert "s3cr3t" not in str(error)

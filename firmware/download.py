"""Streaming package download into the content-addressed cache.

Usage::

    async with Downloader(cache_dir, max_cache_bytes=256 << 20, ca_file=ca) as dl:
        async with dl.fetch(url, sha256_hex, max_size=cap, deadline_s=600) as path:
            data = path.read_bytes()  # pinned: never evicted inside this block

Why aiohttp: the same library serves the test image server, it streams bodies
chunk by chunk, and its TLS is the standard ``ssl`` module, so a custom CA
bundle is one ``SSLContext``.

One transfer per digest: concurrent ``fetch`` calls for the same SHA-256 await
the same task, so ten MCUs needing one package cause one download. The
transfer uses the first caller's URL, cap and deadline; each caller still
bounds its own wait with its own deadline and cap.

Resuming. Within one transfer a dropped connection resumes with ``Range``;
across transfers and restarts the partial file stays in the cache with its
validator (:mod:`firmware.cache`) and the next transfer resumes from it with
``Range`` + ``If-Range``, so a server whose file changed sends it whole. A
partial file is discarded only when it can never complete: wrong hash, over
the size cap, or a size that contradicts the desired ``fwPackageSize``.

Sizes. ``expected_size`` (the desired ``fwPackageSize``) is checked against the
announced length and the bytes received: a mismatch is
``DOWNLOAD_SIZE_MISMATCH``, not "too large", because the server (or the
desired state) is wrong about this package, not over a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import aiohttp
from yarl import URL

from firmware.cache import ContentCache, is_disk_full, normalise_digest
from firmware.errors import CacheError, DownloadError, DownloadTimeout
from firmware.reasons import ReasonCode
from firmware.urls import redact_text, redact_url
from protocols.backoff import FULL_JITTER, Backoff, RetryPolicy

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


#: Retries within one transfer: ``attempts`` counts failures in a row without progress.
#: "Full jitter" spreads many gateways retrying one CDN after an outage.
DOWNLOAD_RETRY = RetryPolicy(8, Backoff(0.5, 30.0, FULL_JITTER))


#: TLS failures that say the server is not who it should be (not a dropped connection).
_UNTRUSTED = (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch)


class _Retry(Exception):
    """A failure worth retrying (dropped connection, 5xx)."""


@dataclass
class _Flight:
    task: asyncio.Task[Path] | None = None
    listeners: list[Progress] = field(default_factory=list)

    def report(self, done: int, total: int | None) -> None:
        for listener in self.listeners:
            listener(done, total)


class Downloader:
    def __init__(
        self,
        cache_dir: Path,
        max_cache_bytes: int,
        *,
        ca_file: Path | None = None,
        allow_http: bool = False,
        retry: RetryPolicy = DOWNLOAD_RETRY,
        chunk_size: int = 64 * 1024,
        rng: random.Random | None = None,
    ) -> None:
        self.cache = ContentCache(cache_dir, max_cache_bytes)
        self._schemes = {"https", "http"} if allow_http else {"https"}
        self._ca_file = ca_file
        self._retry = retry
        self._chunk = chunk_size
        self._rng = rng or random.Random()
        self._flights: dict[str, _Flight] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Downloader:
        ctx = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx),
            # Per-read timeout catches a stalled server; the overall deadline is per fetch.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
            auto_decompress=False,  # Range offsets must refer to the bytes on the wire
            headers={"Accept-Encoding": "identity"},
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def fetch(
        self,
        url: str,
        sha256_hex: str,
        *,
        max_size: int,
        deadline_s: float,
        expected_size: int | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[Path]:
        """Yield the cached file for ``sha256_hex``, downloading it if needed; pinned inside."""
        self._check_scheme(URL(url))
        digest = normalise_digest(sha256_hex)
        self.cache.pin(digest)  # before any await, so a landing download is never evicted
        try:
            path = self.cache.lookup(digest)
            if path is None:
                if digest not in self._flights and (expected_size or 0) <= max_size:
                    self._check_room(digest, expected_size)  # over the cap: that error first
                path = await self._join(
                    url, digest, _Limits(max_size, expected_size), deadline_s, progress
                )
            size = path.stat().st_size
            if expected_size is not None and size != expected_size:
                raise _size_mismatch(size, expected_size, "the package is")
            if size > max_size:
                raise DownloadError(
                    ReasonCode.DOWNLOAD_TOO_LARGE, f"package is {size} bytes, cap is {max_size}"
                )
            yield path
        finally:
            self.cache.unpin(digest)

    def _check_room(self, digest: str, expected_size: int | None) -> None:
        """Refuse before the first byte if the package (``fwPackageSize``) cannot fit.

        Space is made first from other partial downloads and unpinned cached
        packages; only then is the download refused, with the figures.
        """
        if expected_size is None:
            return  # unknown: a full disk mid-way is STORAGE_FULL as well
        needed = expected_size - self.cache.partial_size(digest)
        free = self.cache.free_bytes()
        if free < 0 or free >= needed:
            return
        free = self.cache.make_room(needed, keep={digest, *self._flights})
        if 0 <= free < needed:
            raise DownloadError(
                ReasonCode.STORAGE_FULL,
                f"{free} bytes free on the download cache's disk, {needed} needed for "
                f"the {expected_size}-byte package",
            )

    async def _join(
        self, url: str, digest: str, limits: _Limits, deadline_s: float, progress: Progress | None
    ) -> Path:
        flight = self._flights.get(digest)
        if flight is None:
            flight = self._flights[digest] = _Flight()
            flight.task = asyncio.create_task(
                self._transfer(url, digest, limits, deadline_s, flight),
                name=f"download {digest[:12]}",
            )
            flight.task.add_done_callback(lambda task: self._landed(digest, flight, task))
        if progress is not None:
            flight.listeners.append(progress)
        assert flight.task is not None
        try:
            async with asyncio.timeout(deadline_s):
                # Shielded: one caller giving up must not cancel the others' transfer.
                return await asyncio.shield(flight.task)
        except TimeoutError as exc:
            if flight.task.done():
                raise  # the transfer's own DownloadTimeout
            raise DownloadTimeout(
                ReasonCode.DOWNLOAD_TIMEOUT, f"no package after {deadline_s:g} s"
            ) from exc
        finally:
            if progress is not None:
                flight.listeners.remove(progress)

    def _landed(self, digest: str, flight: _Flight, task: asyncio.Task[Path]) -> None:
        if self._flights.get(digest) is flight:
            del self._flights[digest]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have given up already

    async def _transfer(
        self, url: str, digest: str, limits: _Limits, deadline_s: float, flight: _Flight
    ) -> Path:
        part = self.cache.partial_path(digest)
        keep = False  # keep the partial file for a later resume?
        try:
            start = _Resume(self.cache.partial_validator(digest), 0, hashlib.sha256())
            if start.validator is not None and part.exists():
                start = await asyncio.to_thread(_rehash, part, start.validator, limits)
            async with asyncio.timeout(deadline_s):
                with part.open("ab" if start.offset else "wb") as fh:
                    fh.truncate(start.offset)
                    keep = True
                    actual = await self._stream(URL(url), fh, limits, flight, start, digest)
                    fh.flush()
                    os.fsync(fh.fileno())
            keep = False
            if actual != digest:
                raise DownloadError(
                    ReasonCode.DOWNLOAD_HASH_MISMATCH,
                    f"downloaded SHA-256 {actual[:16]}… != expected {digest[:16]}…",
                )
            return self.cache.commit(part, digest)
        except TimeoutError as exc:
            raise DownloadTimeout(
                ReasonCode.DOWNLOAD_TIMEOUT,
                f"download of {_where(URL(url))} exceeded {deadline_s:g} s",
            ) from exc
        except DownloadError as exc:
            # Only failures a later attempt can get past leave the bytes for a resume.
            keep = keep and exc.reason in (ReasonCode.DOWNLOAD_FAILED,)
            raise
        except CacheError as exc:
            keep = keep and exc.reason is not ReasonCode.STORAGE_FULL
            raise
        except OSError as exc:
            # A full disk: the partial is dropped, never kept to fill the disk for good.
            keep = False
            raise self._disk_error(exc, part, limits) from exc
        finally:
            if not keep or not part.exists() or part.stat().st_size == 0:
                self.cache.drop_partial(digest)

    async def _stream(
        self, url: URL, fh: IO[bytes], limits: _Limits, flight: _Flight, start: _Resume, digest: str
    ) -> str:
        """Write the body to ``fh`` and return its SHA-256; resume with Range after drops."""
        max_size = limits.max_size
        hasher = start.hasher
        offset = start.offset
        failures = 0
        validator = start.validator  # ETag/Last-Modified, so a resume never splices versions
        while True:
            before = offset
            try:
                headers = {}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                    if validator:
                        headers["If-Range"] = validator
                assert self._session is not None, "use Downloader as an async context manager"
                async with self._session.get(url, headers=headers, max_redirects=5) as resp:
                    self._check_scheme(resp.url)
                    if resp.status == 206:
                        if not offset or _range_start(resp) != offset:
                            fh.seek(0)
                            fh.truncate()
                            hasher, offset = hashlib.sha256(), 0
                            raise _Retry("206 for a range we did not ask for")
                    elif resp.status == 200:
                        if offset:  # Range ignored or validator changed: start over
                            fh.seek(0)
                            fh.truncate()
                            hasher, offset = hashlib.sha256(), 0
                    elif resp.status == 416:
                        if _complete_length(resp) == offset:
                            return hasher.hexdigest()  # the drop came after the last byte
                        fh.seek(0)
                        fh.truncate()
                        hasher, offset = hashlib.sha256(), 0
                        raise _Retry("HTTP 416 for our resume offset")
                    elif resp.status in _RETRYABLE_STATUS:
                        raise _Retry(f"HTTP {resp.status}")
                    elif resp.status in (404, 410):
                        raise DownloadError(
                            ReasonCode.PACKAGE_NOT_FOUND,
                            f"HTTP {resp.status}: no package at {_where(url)}",
                        )
                    else:
                        raise DownloadError(
                            ReasonCode.DOWNLOAD_FAILED, f"HTTP {resp.status} from {_where(url)}"
                        )
                    fresh = _validator(resp)
                    if fresh is not None and fresh != validator:
                        self.cache.save_validator(digest, fresh)
                    validator = fresh or validator
                    length = resp.content_length
                    total = None if length is None else offset + length
                    expected = limits.expected_size
                    if total is not None and expected is not None and total != expected:
                        raise _size_mismatch(total, expected, "the server announces")
                    if total is not None and total > max_size:
                        raise _too_large(total, max_size)
                    async for chunk in resp.content.iter_chunked(self._chunk):
                        offset += len(chunk)
                        if expected is not None and offset > expected:
                            raise _size_mismatch(offset, expected, "the server sent at least")
                        if offset > max_size:
                            raise _too_large(offset, max_size)
                        fh.write(chunk)  # 64 KiB to the page cache: cheaper than a thread hop
                        hasher.update(chunk)
                        flight.report(offset, total)
                    if total is not None and offset != total:
                        raise _Retry(f"body ended at {offset} of {total} bytes")
                    return hasher.hexdigest()
            except _UNTRUSTED as exc:
                # A certificate that does not verify does not heal by retrying, here or in
                # the gateway (DOWNLOAD_UNTRUSTED is Kind.TRUST). Other TLS failures (a
                # handshake cut short) are dropped connections and are retried below.
                raise DownloadError(
                    ReasonCode.DOWNLOAD_UNTRUSTED,
                    f"TLS to {_where(url)} failed: {redact_text(str(exc))}",
                ) from exc
            except (aiohttp.ClientError, _Retry) as exc:
                failures = 1 if offset > before else failures + 1
                delay = self._retry.next_delay(failures, self._rng)
                if delay is None:
                    raise DownloadError(
                        ReasonCode.DOWNLOAD_FAILED,
                        f"{_where(url)}: giving up after {failures} failed "
                        f"attempts at byte {offset}: "
                        f"{redact_text(str(exc)) or type(exc).__name__}",
                    ) from exc
                await asyncio.sleep(delay)

    def _disk_error(self, exc: OSError, part: Path, limits: _Limits) -> DownloadError:
        if not is_disk_full(exc):
            return DownloadError(ReasonCode.CACHE_ERROR, f"download cache: {exc.strerror or exc}")
        written = part.stat().st_size if part.exists() else 0
        needed = "" if limits.expected_size is None else f", {limits.expected_size} needed"
        return DownloadError(
            ReasonCode.STORAGE_FULL,
            f"the download cache's disk filled up after {written} bytes of the package "
            f"({self.cache.free_bytes()} bytes free{needed}); the partial file was dropped",
        )

    def _check_scheme(self, url: URL) -> None:
        if url.scheme not in self._schemes:
            raise DownloadError(
                ReasonCode.URL_REFUSED,
                f"scheme {url.scheme!r} refused; allowed: {', '.join(sorted(self._schemes))}",
            )


def _range_start(resp: aiohttp.ClientResponse) -> int | None:
    match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _complete_length(resp: aiohttp.ClientResponse) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _validator(resp: aiohttp.ClientResponse) -> str | None:
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return etag
    return resp.headers.get("Last-Modified")


def _where(url: URL) -> str:
    # Host and path only: userinfo and a SAS query string are credentials.
    return redact_url(str(url))


@dataclass(frozen=True)
class _Limits:
    max_size: int  # the cap: policy limit and fwPackageSize, whichever is lower
    expected_size: int | None  # the desired fwPackageSize, when given


@dataclass
class _Resume:
    validator: str | None
    offset: int
    hasher: hashlib._Hash


def _rehash(part: Path, validator: str, limits: _Limits) -> _Resume:
    """Hash a kept partial file so the download can go on from its end (in a thread)."""
    hasher = hashlib.sha256()
    size = 0
    cap = limits.max_size if limits.expected_size is None else limits.expected_size
    with part.open("rb") as fh:
        while block := fh.read(1 << 20):
            size += len(block)
            if size > cap:
                return _Resume(None, 0, hashlib.sha256())  # cannot be this package: start over
            hasher.update(block)
    return _Resume(validator, size, hasher)


def _size_mismatch(size: int, expected: int, what: str) -> DownloadError:
    return DownloadError(
        ReasonCode.DOWNLOAD_SIZE_MISMATCH,
        f"{what} {size} bytes but the desired fwPackageSize is {expected}",
    )


def _too_large(size: int, cap: int) -> DownloadError:
    return DownloadError(
        ReasonCode.DOWNLOAD_TOO_LARGE, f"response exceeds the size cap: {size} > {cap} bytes"
    )

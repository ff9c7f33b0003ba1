"""Downloads on a really small file system (issue 17.1): refused before the first byte
when fwPackageSize cannot fit, and a partial that hits ENOSPC is dropped, not kept."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path

import pytest

from firmware.download import Downloader
from firmware.errors import DownloadError
from firmware.reasons import ReasonCode
from protocols.backoff import FULL_JITTER, Backoff, RetryPolicy
from simulators.image_server import ImageServer
from tests.smallfs import fill, free, small_fs

MB = 1 << 20


def _downloader(cache: Path, ca_file: Path) -> Downloader:
    retry = RetryPolicy(2, Backoff(0.001, 0.01, FULL_JITTER))
    return Downloader(cache, 64 * MB, ca_file=ca_file, retry=retry, rng=random.Random(1))


async def _fetch(dl: Downloader, url: str, blob: bytes, size: int | None) -> bytes:
    digest = hashlib.sha256(blob).hexdigest()
    async with asyncio.timeout(20), dl.fetch(url, digest, max_size=16 * MB, deadline_s=20,
                                             expected_size=size) as path:  # fmt: skip
        return path.read_bytes()


async def test_a_package_that_cannot_fit_is_refused_before_the_first_byte(
    tmp_path: Path, ca_file: Path, image_server: ImageServer
) -> None:
    blob = os.urandom(4 * MB)
    image_server.add("big.mcufw", blob)
    url = image_server.url("big.mcufw", tls=True)
    with small_fs(tmp_path / "fs", "3m") as fs:
        async with _downloader(fs / "cache", ca_file) as dl:
            with pytest.raises(DownloadError) as err:
                await _fetch(dl, url, blob, len(blob))
        assert err.value.reason is ReasonCode.STORAGE_FULL
        assert f"{4 * MB} needed" in err.value.message
        assert " bytes free" in err.value.message
        assert image_server.stats("big.mcufw").requests == 0  # refused before asking
        assert list((fs / "cache" / "tmp").iterdir()) == []


async def test_enospc_mid_download_drops_the_partial_and_space_back_lets_it_through(
    tmp_path: Path, ca_file: Path, image_server: ImageServer
) -> None:
    blob = os.urandom(2 * MB)
    image_server.add("pkg.mcufw", blob)
    url = image_server.url("pkg.mcufw", tls=True)
    with small_fs(tmp_path / "fs", "3m") as fs:
        filler = fill(fs, leave=MB)
        async with _downloader(fs / "cache", ca_file) as dl:
            with pytest.raises(DownloadError) as err:
                await _fetch(dl, url, blob, None)  # no fwPackageSize: found out mid-way
            assert err.value.reason is ReasonCode.STORAGE_FULL
            assert "the partial file was dropped" in err.value.message
            assert list((fs / "cache" / "tmp").iterdir()) == []  # nothing left to fill it
            assert free(fs) >= MB // 2
            filler.unlink()  # space is back: the same downloader gets it, no restart
            assert await _fetch(dl, url, blob, len(blob)) == blob


async def test_room_is_made_from_old_partials_and_cached_packages_first(
    tmp_path: Path, ca_file: Path, image_server: ImageServer
) -> None:
    blob = os.urandom(MB)
    image_server.add("pkg.mcufw", blob)
    url = image_server.url("pkg.mcufw", tls=True)
    with small_fs(tmp_path / "fs", "3m") as fs:
        async with _downloader(fs / "cache", ca_file) as dl:
            stale = dl.cache.partial_path("ab" * 32)
            stale.write_bytes(os.urandom(MB))  # an abandoned download of another package
            old = dl.cache.path_of("cd" * 32)
            old.write_bytes(os.urandom(MB // 2))  # a cached package nobody uses now
            fill(fs, leave=MB // 4)
            assert await _fetch(dl, url, blob, len(blob)) == blob
            assert not stale.exists()


async def test_a_package_over_the_cap_says_so_rather_than_storage_full(
    tmp_path: Path, ca_file: Path, image_server: ImageServer
) -> None:
    blob = os.urandom(4 * MB)
    image_server.add("big.mcufw", blob)
    url = image_server.url("big.mcufw", tls=True)
    digest = hashlib.sha256(blob).hexdigest()
    with small_fs(tmp_path / "fs", "3m") as fs:
        async with _downloader(fs / "cache", ca_file) as dl:
            with pytest.raises(DownloadError) as err:
                async with (
                    asyncio.timeout(20),
                    dl.fetch(url, digest, max_size=MB, deadline_s=20, expected_size=len(blob)),
                ):
                    pass
    assert err.value.reason is ReasonCode.DOWNLOAD_TOO_LARGE

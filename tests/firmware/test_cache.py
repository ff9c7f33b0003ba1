from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from firmware.cache import ContentCache
from firmware.errors import CacheError
from firmware.reasons import ReasonCode


def _store(cache: ContentCache, data: bytes, mtime: float) -> str:
    digest = hashlib.sha256(data).hexdigest()
    tmp = cache.temp_path()
    tmp.write_bytes(data)
    path = cache.commit(tmp, digest)
    os.utime(path, (mtime, mtime))  # explicit recency: the test must not depend on clock ticks
    return digest


def _digests(cache: ContentCache) -> set[str]:
    return {d for d, _, _ in cache.entries()}


def test_commit_is_content_addressed_and_atomic(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 1000)
    digest = _store(cache, b"x" * 10, 1)
    assert cache.lookup(digest) == tmp_path / "sha256" / digest
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 63, "g" * 64, "/" + "a" * 63])
def test_names_that_are_not_digests_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(CacheError) as exc:
        ContentCache(tmp_path, 1000).lookup(bad)
    assert exc.value.reason is ReasonCode.CACHE_ERROR


def test_lru_eviction_skips_pinned_files(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 250)
    a = _store(cache, b"a" * 100, 1)
    cache.pin(a)
    b = _store(cache, b"b" * 100, 2)
    c = _store(cache, b"c" * 100, 3)  # over budget: a is oldest but pinned, so b goes
    assert b not in _digests(cache)
    assert _digests(cache) == {a, c}
    cache.unpin(a)  # released and still over nothing: 200 <= 250, a stays
    assert _digests(cache) == {a, c}
    cache.lookup(a)  # a is now most recently used
    d = _store(cache, b"d" * 100, 4)
    os.utime(cache.path_of(a), (5, 5))
    cache.evict()
    assert _digests(cache) == {a, d}


def test_pinned_files_may_exceed_budget_until_released(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 150)
    a = _store(cache, b"a" * 100, 1)
    b_digest = hashlib.sha256(b"b" * 100).hexdigest()
    cache.pin(a)
    cache.pin(b_digest)  # pinned before it exists, as a download in flight is
    _store(cache, b"b" * 100, 2)
    assert _digests(cache) == {a, b_digest}
    cache.unpin(a)
    assert _digests(cache) == {b_digest}


def test_stale_partial_files_are_removed_on_open(tmp_path: Path) -> None:
    ContentCache(tmp_path, 100)
    (tmp_path / "tmp" / "dead.part").write_bytes(b"half")
    ContentCache(tmp_path, 100)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_partial_downloads_survive_a_restart_until_they_are_old(tmp_path: Path) -> None:
    import os
    import time

    from firmware.cache import PARTIAL_MAX_AGE_S

    cache = ContentCache(tmp_path, 1000)
    fresh, old = "a" * 64, "b" * 64
    for digest in (fresh, old):
        cache.partial_path(digest).write_bytes(b"part")
        cache.save_validator(digest, '"etag"')
    (tmp_path / "tmp" / "leftover.part").write_bytes(b"x")  # an older layout's temp file
    long_ago = time.time() - PARTIAL_MAX_AGE_S - 60
    for suffix in (".part", ".json"):
        os.utime(tmp_path / "tmp" / f"{old}{suffix}", (long_ago, long_ago))
    cache = ContentCache(tmp_path, 1000)  # a restart
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == [f"{fresh}.json",
                                                                     f"{fresh}.part"]  # fmt: skip
    assert cache.partial_validator(fresh) == '"etag"'
    assert cache.partial_validator(old) is None

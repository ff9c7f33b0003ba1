"""A content-addressed file cache keyed by SHA-256, bounded in size, evicting LRU.

File names are the lower-case hex digest and nothing else, so no URL or
manifest text ever reaches the file system. Files appear only by
``os.replace`` of a fully written, fsynced temporary file, so readers never
see a partial package. Recency is the file's mtime, which survives restarts.

Pins are counted per digest, not per file, so a caller can pin a digest
before its file exists: a download in flight is then safe from eviction the
moment it lands.

Partial downloads survive a restart: ``tmp/<digest>.part`` holds the bytes so
far and ``tmp/<digest>.json`` the server's validator (ETag or Last-Modified,
never the URL), so the next attempt resumes with ``Range`` + ``If-Range``
instead of fetching the whole package again. Anything else in ``tmp`` is left
from an older layout and removed at start, as are partial files untouched for
:data:`PARTIAL_MAX_AGE_S`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from firmware.errors import CacheError
from firmware.reasons import ReasonCode

#: A partial download untouched this long is for a package nobody wants any more.
PARTIAL_MAX_AGE_S = 7 * 24 * 3600
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PARTIAL = re.compile(r"[0-9a-f]{64}\.(part|json)")


def normalise_digest(sha256_hex: str) -> str:
    digest = sha256_hex.lower()
    if not _DIGEST.fullmatch(digest):
        raise CacheError(ReasonCode.CACHE_ERROR, f"{sha256_hex[:70]!r} is not a SHA-256 hex digest")
    return digest


class ContentCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._objects = root / "sha256"
        self._tmp = root / "tmp"
        self._pins: Counter[str] = Counter()
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(exist_ok=True)
            # Partial downloads are kept to be resumed, for a while; anything else is debris.
            oldest = time.time() - PARTIAL_MAX_AGE_S
            for stale in self._tmp.iterdir():
                if not _PARTIAL.fullmatch(stale.name) or stale.stat().st_mtime < oldest:
                    stale.unlink(missing_ok=True)
        except OSError as exc:
            raise CacheError(ReasonCode.CACHE_ERROR, f"cache directory {root}: {exc}") from exc

    def path_of(self, digest: str) -> Path:
        return self._objects / normalise_digest(digest)

    def lookup(self, digest: str) -> Path | None:
        """The cached file, marked most recently used, or None."""
        path = self.path_of(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def pin(self, digest: str) -> None:
        self._pins[normalise_digest(digest)] += 1

    def unpin(self, digest: str) -> None:
        digest = normalise_digest(digest)
        self._pins[digest] -= 1
        if self._pins[digest] <= 0:
            del self._pins[digest]
            self.evict()

    def is_pinned(self, digest: str) -> bool:
        return self._pins[digest] > 0

    def temp_path(self) -> Path:
        return self._tmp / f"{secrets.token_hex(8)}.part"

    def partial_path(self, digest: str) -> Path:
        """Where the download of ``digest`` accumulates until it is complete."""
        return self._tmp / f"{normalise_digest(digest)}.part"

    def partial_validator(self, digest: str) -> str | None:
        """The validator saved with a partial download, or None (then it cannot resume)."""
        try:
            meta = json.loads((self._tmp / f"{normalise_digest(digest)}.json").read_text())
        except (OSError, ValueError):
            return None
        validator = meta.get("validator") if isinstance(meta, dict) else None
        return validator if isinstance(validator, str) else None

    def save_validator(self, digest: str, validator: str) -> None:
        meta = self._tmp / f"{normalise_digest(digest)}.json"
        scratch = meta.with_suffix(".new")
        try:
            scratch.write_text(json.dumps({"validator": validator}))
            os.replace(scratch, meta)
        except OSError as exc:
            scratch.unlink(missing_ok=True)
            raise CacheError(_disk_reason(exc), f"cannot save download state: {exc}") from exc

    def partial_size(self, digest: str) -> int:
        try:
            return self.partial_path(digest).stat().st_size
        except OSError:
            return 0

    def free_bytes(self) -> int:
        """Bytes still free for the cache's files (-1 if the file system will not say)."""
        try:
            return shutil.disk_usage(self._tmp).free
        except OSError:
            return -1

    def make_room(self, needed: int, keep: Collection[str] = ()) -> int:
        """Free disk for ``needed`` bytes if the cache can; returns the bytes free after.

        Partial downloads not in ``keep`` go first (a resume only saves bytes),
        then cached packages, least recently used first; pinned ones stay.
        """
        free = self.free_bytes()
        for part in sorted(self._tmp.glob("*.part"), key=_mtime):
            if free < 0 or free >= needed:
                return free
            if part.stem not in keep:
                self.drop_partial(part.stem)
                free = self.free_bytes()
        for digest, _, _ in self.entries():
            if free < 0 or free >= needed:
                break
            if not self.is_pinned(digest):
                (self._objects / digest).unlink(missing_ok=True)
                free = self.free_bytes()
        return free

    def drop_partial(self, digest: str) -> None:
        digest = normalise_digest(digest)
        for suffix in (".part", ".json"):
            (self._tmp / f"{digest}{suffix}").unlink(missing_ok=True)

    def commit(self, tmp: Path, digest: str) -> Path:
        """Atomically move a verified temporary file into place, then trim the cache."""
        path = self.path_of(digest)
        try:
            os.replace(tmp, path)
            dir_fd = os.open(self._objects, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise CacheError(_disk_reason(exc), f"cannot store {digest}: {exc}") from exc
        (self._tmp / f"{normalise_digest(digest)}.json").unlink(missing_ok=True)
        self.evict()
        return path

    def entries(self) -> list[tuple[str, int, float]]:
        """(digest, size, mtime) for every cached file, least recently used first."""
        found = []
        for entry in os.scandir(self._objects):
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat()
                found.append((entry.name, st.st_size, st.st_mtime))
        return sorted(found, key=lambda e: e[2])

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> None:
        """Drop least recently used, unpinned files until the cache fits its budget.

        Pinned files are never removed, so the cache may exceed its budget
        while they are in use; it shrinks again when they are released.
        """
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for digest, size, _ in entries:
            if total <= self.max_bytes:
                break
            if self.is_pinned(digest):
                continue
            (self._objects / digest).unlink(missing_ok=True)
            total -= size


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _disk_reason(exc: OSError) -> ReasonCode:
    return ReasonCode.STORAGE_FULL if is_disk_full(exc) else ReasonCode.CACHE_ERROR


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0

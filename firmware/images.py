"""Images the gateway flashed, kept in the content cache by their own SHA-256.

They are the bases of automatic delta updates (docs/protocol.md §17): when an
MCU's INFO names the hash of an image the gateway once wrote, the next update
can be sent as a patch against it. The cache is content-addressed, so an image
sits beside the packages under its own digest; LRU eviction may drop it, and
then the next update is simply sent compressed.
"""

from __future__ import annotations

import hashlib
import os

from firmware.cache import ContentCache
from firmware.errors import CacheError


def remember(cache: ContentCache, image: bytes) -> str:
    """Store ``image`` (fsynced, atomically); return its hex SHA-256."""
    digest = hashlib.sha256(image).hexdigest()
    if cache.lookup(digest) is not None:
        return digest
    tmp = cache.temp_path()
    try:
        with open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    cache.commit(tmp, digest)
    return digest


def recall(cache: ContentCache, sha256_hex: str | None) -> bytes | None:
    """The image with this SHA-256 if the cache holds it intact, else None."""
    if not sha256_hex:
        return None
    try:
        path = cache.lookup(sha256_hex)
        data = path.read_bytes() if path is not None else None
    except (CacheError, OSError):
        return None
    if data is None or hashlib.sha256(data).hexdigest() != sha256_hex.lower():
        return None  # a damaged cache file is no base for a patch
    return data

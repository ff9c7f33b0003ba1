"""An update that failed for a full disk (issue 17.1) is retried by itself, without
giving up, and as soon as the disk has room again rather than at the end of its backoff."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware.errors import DownloadError
from firmware.reasons import ReasonCode
from gateway.config import PolicySettings
from tests.gateway.fakes import release
from tests.gateway.test_agent import fast_forward, rig

FULL = DownloadError(ReasonCode.STORAGE_FULL, "0 bytes free, 4096 needed for the package")


@fast_forward
async def test_storage_full_retries_as_soon_as_space_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = {"bytes": 0}
    policy = PolicySettings(retry_attempts=2, retry_base_s=600.0, retry_max_s=600.0)
    async with rig(tmp_path, policy=policy) as r:
        monkeypatch.setattr(r.downloader.cache, "free_bytes", lambda: free["bytes"])
        rel = release(r.downloader, r.key, "2.0.0")
        r.downloader.failures[rel.url] = [FULL, FULL, FULL]
        loop = asyncio.get_running_loop()
        r.link.set_desired(rel.desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "STORAGE_FULL"
        assert "sooner once the disk has room" in fw["fwUpdateSubstatus"]
        # Past the attempt budget: a full disk is never given up on.
        await r.link.wait_for(lambda _: len(r.downloader.fetches) == 3, within=3600)
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert "gave up" not in fw["fwUpdateSubstatus"]
        failed_at = loop.time()
        free["bytes"] = 64 << 20  # someone freed the disk
        await r.wait_fw(within=60, fwUpdateStatus="current", currentFwVersion="2.0.0")
        assert loop.time() - failed_at < 30  # not the 600 s backoff

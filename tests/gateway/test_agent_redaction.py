"""A token in a ``;param`` path parameter reaches neither the twin, the journal nor the log
(issue 17.8)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from firmware.errors import DownloadError
from firmware.reasons import ReasonCode
from gateway.logs import TextFormatter
from tests.gateway.fakes import release
from tests.gateway.test_agent import rig


async def test_a_path_parameter_token_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as r:
        rel = release(r.downloader, r.key, "2.0.0")
        url = "https://cdn.example/fw/2.0.0.mcufw;token=p4r4m-s3cr3t"
        r.downloader.packages[url] = rel.blob
        r.downloader.failures[url] = [
            DownloadError(ReasonCode.DOWNLOAD_FAILED, f"{url}: giving up after 8 attempts")
        ]
        r.link.set_desired(rel.desired(fwPackageURI=url, retry=0))
        await r.wait_fw(fwUpdateStatus="error")
        r.link.set_desired(rel.desired(fwPackageURI=url, retry=1))
        await r.wait_fw(fwUpdateStatus="current", currentFwVersion="2.0.0")
        journal_file = r.journal.path
    formatter = TextFormatter("%(message)s")
    log = "\n".join(formatter.format(record) for record in caplog.records)
    with sqlite3.connect(journal_file) as db:
        rows = json.dumps([list(row) for t in ("update_history", "mcu")
                           for row in db.execute(f"SELECT * FROM {t}")])  # fmt: skip
    shown = json.dumps([p for p, _ in r.link.reports]) + log + rows
    assert "cdn.example/fw/2.0.0.mcufw;***" in shown  # the URL is shown...
    assert "p4r4m-s3cr3t" not in shown  # ...without its token

"""Fetching the small documents ADU points at (root key packages): bounded, over aiohttp."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from firmware.urls import redact_url
from gateway.adu.errors import AduError

#: The agent refuses a root key package URL it cannot download
#: (RootKeyWorkflow_UpdateRootKeys fails the deployment).
ERC_ROOTKEY_DOWNLOAD_FAILED = 0xA0100001  # FACILITY_INFRA_MGMT, ROOTKEY_DOWNLOADER, 1


async def fetch_small(
    url: str, *, limit: int, ca_file: Path | None = None, timeout_s: float = 30.0
) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise AduError(f"{redact_url(url)}: not an http(s) URL", ERC_ROOTKEY_DOWNLOAD_FAILED)
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, ssl=ctx) as resp,
        ):
            if resp.status != 200:
                raise AduError(
                    f"{redact_url(url)}: HTTP {resp.status}", ERC_ROOTKEY_DOWNLOAD_FAILED
                )
            data = await read_capped(resp, limit)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise AduError(
            f"{redact_url(url)}: download failed ({type(exc).__name__})",
            ERC_ROOTKEY_DOWNLOAD_FAILED,
        ) from exc
    if len(data) > limit:
        raise AduError(f"{redact_url(url)}: larger than {limit} bytes", ERC_ROOTKEY_DOWNLOAD_FAILED)
    return data


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ``limit + 1`` bytes if it is longer (``content.read(n)`` returns
    only what has arrived so far)."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]

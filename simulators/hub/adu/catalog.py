"""The local ADU service's update catalog: imports (long-running operations) and files.

An import fetches the import manifest and every file from the URLs given (as ADU
fetches from a publisher's storage), checks sizes and SHA-256 against the request
and the manifest, validates the manifest (:mod:`simulators.hub.adu.importer`),
applies the update limits (:mod:`simulators.hub.adu.limits`) and keeps the files
for devices to download. Operation states follow the REST API (NotStarted,
Running, Succeeded, Failed) as ``azure-iot-deviceupdate``'s poller reads them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from simulators.hub.adu import importer, limits
from simulators.hub.adu.errors import AduRequestError

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ``limit + 1`` bytes if it is longer."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def utc(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def update_key(uid: dict[str, str]) -> str:
    return f"{uid['provider']}/{uid['name']}/{uid['version']}"


class UpdateCatalog:
    def __init__(
        self,
        state: JsonObject,
        files_dir: Path,
        *,
        instance_id: str,
        save: Callable[[], None],
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.updates: dict[str, JsonObject] = state.setdefault("updates", {})
        self.operations: dict[str, JsonObject] = state.setdefault("operations", {})
        self.files_dir = files_dir
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.instance_id = instance_id
        self.save = save
        self.ca_file = ca_file
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def begin_import(self, body: Any) -> JsonObject:
        if not isinstance(body, list) or not body:
            raise AduRequestError(400, "BadRequest", "the body must be a list of updates to import")
        running = sum(op["status"] in ("NotStarted", "Running") for op in self.operations.values())
        if running >= limits.MAX_CONCURRENT_IMPORTS:
            raise AduRequestError(
                429, "TooManyRequests", "10 import operations are already running"
            )
        for item in body:
            im = item.get("importManifest") if isinstance(item, dict) else None
            if not isinstance(im, dict) or not isinstance(im.get("url"), str):
                raise AduRequestError(400, "BadRequest", "importManifest.url is required")
        op_id = str(uuid.uuid4())
        now = utc(self.clock())
        op = {
            "operationId": op_id,
            "status": "NotStarted",
            "createdDateTime": now,
            "lastActionDateTime": now,
            "etag": f'"{op_id}"',
        }
        self.operations[op_id] = op
        self.save()
        task = asyncio.get_running_loop().create_task(self._import(op_id, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def _import(self, op_id: str, body: list[JsonObject]) -> None:
        op = self.operations[op_id]
        op["status"] = "Running"
        try:
            for item in body:
                await self._import_one(op, item)
            op["status"] = "Succeeded"
        except AduRequestError as exc:
            op["status"] = "Failed"
            op["error"] = {"code": exc.code, "message": exc.message}
        except Exception as exc:  # a bug in the emulator: fail the operation, not the loop
            log.exception("import failed")
            op["status"] = "Failed"
            op["error"] = {"code": "InternalError", "message": type(exc).__name__}
        op["lastActionDateTime"] = utc(self.clock())
        self.save()

    async def _fetch(self, url: str, size: int | None, sha256_b64: str | None, what: str) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
                session.get(url, ssl=ctx if url.startswith("https:") else False) as resp,
            ):
                if resp.status != 200:
                    raise AduRequestError(400, "ImportFileNotFound", f"{what}: HTTP {resp.status}")
                data = await read_capped(resp, limits.MAX_FILE_BYTES)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AduRequestError(
                400, "ImportFileNotFound", f"{what}: {type(exc).__name__}"
            ) from exc
        if size is not None and len(data) != size:
            raise AduRequestError(
                400,
                "ImportFileSizeMismatch",
                f"{what}: {len(data)} bytes, the manifest says {size}",
            )
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if sha256_b64 is not None and digest != sha256_b64:
            raise AduRequestError(400, "ImportFileHashMismatch", f"{what}: SHA-256 differs")
        return data

    async def _import_one(self, op: JsonObject, item: JsonObject) -> None:
        im = item["importManifest"]
        sha = (im.get("hashes") or {}).get("sha256")
        raw = await self._fetch(im["url"], im.get("sizeInBytes"), sha, "import manifest")
        try:
            manifest = importer.validate(json.loads(raw))
        except ValueError as exc:
            raise AduRequestError(
                400, "BadImportManifest", f"import manifest is not JSON: {exc}"
            ) from exc
        uid = manifest["updateId"]
        op["update"] = {"updateId": uid}
        key = update_key(uid)
        if key in self.updates:
            raise AduRequestError(409, "UpdateAlreadyExists", f"update {key} is already imported")
        self._check_update_limits(uid)
        files = importer.imported_files(manifest)
        urls = {f.get("filename"): f.get("url") for f in item.get("files") or []}
        for f in files:
            url = urls.get(f.file_name)
            if not isinstance(url, str):
                raise AduRequestError(
                    400, "ImportFileNotFound", f"no URL for file {f.file_name!r:.40}"
                )
            data = await self._fetch(url, f.size, f.sha256_b64, f"file {f.file_name}")
            (self.files_dir / f.sha256_hex).write_bytes(data)
        now = utc(self.clock())
        steps = manifest["instructions"]["steps"]
        criteria = (steps[0].get("handlerProperties") or {}).get("installedCriteria")
        self.updates[key] = {
            "updateId": uid,
            "description": manifest.get("description"),
            "friendlyName": item.get("friendlyName"),
            "isDeployable": manifest.get("isDeployable", True),
            "compatibility": manifest["compatibility"],
            "instructions": manifest["instructions"],
            "manifestVersion": manifest["manifestVersion"],
            "installedCriteria": criteria,
            "importedDateTime": now,
            "createdDateTime": manifest["createdDateTime"],
            "etag": f'"{uuid.uuid4()}"',
            "_files": [f.__dict__ for f in files],
            "_deviceManifest": importer.device_manifest(manifest, files),
        }
        op["resourceLocation"] = (
            f"/deviceUpdate/{self.instance_id}/updates/providers/{uid['provider']}"
            f"/names/{uid['name']}/versions/{uid['version']}?api-version=2022-10-01"
        )
        self.save()

    def _check_update_limits(self, uid: dict[str, str]) -> None:
        ids = [u["updateId"] for u in self.updates.values()]
        if len(ids) >= limits.MAX_UPDATES:
            raise AduRequestError(
                409,
                "UpdateLimitExceeded",
                f"an instance holds at most {limits.MAX_UPDATES} updates",
            )
        providers = {i["provider"] for i in ids}
        if uid["provider"] not in providers and len(providers) >= limits.MAX_PROVIDERS:
            raise AduRequestError(
                409, "UpdateProviderLimitExceeded", f"at most {limits.MAX_PROVIDERS} providers"
            )
        names = {i["name"] for i in ids if i["provider"] == uid["provider"]}
        if uid["name"] not in names and len(names) >= limits.MAX_NAMES_PER_PROVIDER:
            raise AduRequestError(
                409,
                "UpdateNameLimitExceeded",
                f"at most {limits.MAX_NAMES_PER_PROVIDER} names per provider",
            )
        versions = [i for i in ids if i["provider"] == uid["provider"] and i["name"] == uid["name"]]
        if len(versions) >= limits.MAX_VERSIONS_PER_NAME:
            raise AduRequestError(
                409,
                "UpdateVersionLimitExceeded",
                f"at most {limits.MAX_VERSIONS_PER_NAME} versions per name",
            )

    def update(self, provider: str, name: str, version: str) -> JsonObject:
        found = self.updates.get(f"{provider}/{name}/{version}")
        if found is None:
            raise AduRequestError(404, "UpdateNotFound", f"no update {provider}/{name}/{version}")
        return found

    def delete_update(self, provider: str, name: str, version: str, deployed: set[str]) -> None:
        """Forget an update; ``deployed`` holds the keys live deployments use (refused)."""
        key = update_key(self.update(provider, name, version)["updateId"])
        if key in deployed:
            raise AduRequestError(409, "UpdateInUse", f"update {key} is deployed")
        del self.updates[key]
        self.save()

    @staticmethod
    def public_update(record: JsonObject) -> JsonObject:
        return {k: v for k, v in record.items() if not k.startswith("_") and v is not None}

    def file_record(self, record: JsonObject, file_id: str) -> JsonObject:
        for f in record["_files"]:
            if f["file_id"] == file_id:
                return {
                    "fileId": f["file_id"],
                    "fileName": f["file_name"],
                    "sizeInBytes": f["size"],
                    "hashes": {"sha256": f["sha256_b64"]},
                    "etag": record["etag"],
                }
        raise AduRequestError(404, "FileNotFound", f"no file {file_id}")

    def file_path(self, sha256_hex: str) -> Path | None:
        if len(sha256_hex) != 64 or any(c not in "0123456789abcdef" for c in sha256_hex):
            return None
        path = self.files_dir / sha256_hex
        return path if path.is_file() else None

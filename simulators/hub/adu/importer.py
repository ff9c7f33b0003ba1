"""Import manifest v5 validation, and the update manifest ADU sends devices for it.

Rules from import-schema.md ("Importing updates into Device Update for IoT Hub:
schema"): see :mod:`simulators.hub.adu.limits`. The device-side update manifest
(``manifestVersion`` "5", files keyed by generated file ids, hashes in base64)
has the shape of the reference agent's test data (github Azure/iot-hub-device-update,
src/agent/adu_core_interface/tests/testdata).
Sans-I/O: dictionaries in, records out, :class:`AduRequestError` on any violation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from simulators.hub.adu import limits
from simulators.hub.adu.errors import AduRequestError


@dataclass(frozen=True)
class ImportedFile:
    file_id: str
    file_name: str
    size: int
    sha256_b64: str

    @property
    def sha256_hex(self) -> str:
        return base64.b64decode(self.sha256_b64).hex()


def _bad(message: str) -> AduRequestError:
    return AduRequestError(400, "BadImportManifest", message)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def update_id(raw: Any, where: str = "updateId") -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) != {"provider", "name", "version"}:
        raise _bad(f"{where} must have exactly provider, name and version")
    for part in ("provider", "name"):
        if not isinstance(raw[part], str) or not limits.UPDATE_ID_PART.fullmatch(raw[part]):
            raise _bad(f"{where}.{part} must match ^[a-zA-Z0-9.-]+$, 1-64 characters")
    version = raw["version"]
    if not isinstance(version, str) or not limits.VERSION.fullmatch(version):
        raise _bad(f"{where}.version {version!r:.40} is not 2-4 dot-separated numbers")
    if any(int(p) > limits.MAX_VERSION_PART for p in version.split(".")):
        raise _bad(f"{where}.version parts must be at most {limits.MAX_VERSION_PART}")
    return {"provider": raw["provider"], "name": raw["name"], "version": version}


def validate(manifest: Any) -> dict[str, Any]:
    """Check an import manifest v5; returns it. Additional properties are refused."""
    if not isinstance(manifest, dict):
        raise _bad("import manifest is not a JSON object")
    allowed = {
        "$schema",
        "updateId",
        "isDeployable",
        "description",
        "compatibility",
        "instructions",
        "files",
        "manifestVersion",
        "createdDateTime",
    }
    extra = sorted(set(manifest) - allowed)
    if extra:
        raise _bad(f"unknown property {extra[0]!r:.40}")
    if manifest.get("manifestVersion") != limits.MANIFEST_VERSION:
        raise _bad(f"manifestVersion must be {limits.MANIFEST_VERSION}")
    update_id(manifest.get("updateId"))
    if not isinstance(manifest.get("createdDateTime"), str):
        raise _bad("createdDateTime is required")
    desc = manifest.get("description")
    if desc is not None and (
        not isinstance(desc, str) or not 1 <= len(desc) <= limits.MAX_DESCRIPTION
    ):
        raise _bad(f"description must be 1-{limits.MAX_DESCRIPTION} characters")
    _compatibility(manifest.get("compatibility"))
    files = manifest.get("files") or []
    if not isinstance(files, list) or len(files) > limits.MAX_FILES:
        raise _bad(f"files must be a list of at most {limits.MAX_FILES}")
    names = [_file(f) for f in files]
    if len(set(names)) != len(names):
        raise _bad("file names must be unique within an update")
    steps = (manifest.get("instructions") or {}).get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= limits.MAX_STEPS:
        raise _bad(f"instructions.steps must hold 1-{limits.MAX_STEPS} steps")
    for i, step in enumerate(steps):
        _step(step, i, set(names))
    return manifest


def _compatibility(compat: Any) -> None:
    if not isinstance(compat, list) or not 1 <= len(compat) <= limits.MAX_COMPAT_SETS:
        raise _bad(f"compatibility must hold 1-{limits.MAX_COMPAT_SETS} property sets")
    for entry in compat:
        if not isinstance(entry, dict) or not 1 <= len(entry) <= limits.MAX_COMPAT_PROPERTIES:
            raise _bad(f"a compatibility set holds 1-{limits.MAX_COMPAT_PROPERTIES} properties")
        for key, value in entry.items():
            if not 1 <= len(key) <= limits.MAX_COMPAT_NAME:
                raise _bad(
                    f"compatibility property names are 1-{limits.MAX_COMPAT_NAME} characters"
                )
            if not isinstance(value, str) or not 1 <= len(value) <= limits.MAX_COMPAT_VALUE:
                raise _bad(
                    f"compatibility value of {key!r:.32} must be a string of "
                    f"1-{limits.MAX_COMPAT_VALUE} characters"
                )


def _file(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise _bad("a file entry is not an object")
    name = raw.get("filename")
    if not isinstance(name, str) or not 1 <= len(name) <= limits.MAX_FILENAME:
        raise _bad(f"file.filename must be 1-{limits.MAX_FILENAME} characters")
    size = raw.get("sizeInBytes")
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or not 1 <= size <= limits.MAX_FILE_BYTES
    ):
        raise _bad(f"file {name!r:.40}: sizeInBytes must be 1..{limits.MAX_FILE_BYTES}")
    sha = (raw.get("hashes") or {}).get("sha256")
    try:
        if not isinstance(sha, str) or len(base64.b64decode(sha, validate=True)) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise _bad(f"file {name!r:.40}: hashes.sha256 must be a base64 SHA-256") from None
    return name


def _step(step: Any, index: int, files: set[str]) -> None:
    if not isinstance(step, dict):
        raise _bad(f"step {index} is not an object")
    if step.get("type") == "reference":
        update_id(step.get("updateId"), f"steps[{index}].updateId")
        return
    handler = step.get("handler")
    low, high = limits.HANDLER_LENGTH
    if (
        not isinstance(handler, str)
        or not low <= len(handler) <= high
        or not limits.HANDLER.fullmatch(handler)
    ):
        raise _bad(
            f"steps[{index}].handler must match ^\\S+/\\S+:\\d{{1,5}}$, {low}-{high} characters"
        )
    names = step.get("files")
    if not isinstance(names, list) or not 1 <= len(names) <= limits.MAX_FILES:
        raise _bad(f"steps[{index}].files must name 1-{limits.MAX_FILES} files")
    for name in names:
        if name not in files:
            raise _bad(f"steps[{index}] names file {name!r:.40}, which the manifest does not list")


def file_id(update: dict[str, str], name: str) -> str:
    """A stable file id, like ADU's ("f" and hex digits)."""
    key = json.dumps([update, name]).encode()
    return "f" + hashlib.sha256(key).hexdigest()[:16]


def imported_files(manifest: dict[str, Any]) -> list[ImportedFile]:
    uid = manifest["updateId"]
    return [
        ImportedFile(
            file_id(uid, f["filename"]), f["filename"], f["sizeInBytes"], f["hashes"]["sha256"]
        )
        for f in manifest.get("files") or []
    ]


def device_manifest(manifest: dict[str, Any], files: list[ImportedFile]) -> str:
    """The ``updateManifest`` string ADU puts in a device's twin for this update."""
    by_name = {f.file_name: f for f in files}
    steps = []
    for step in manifest["instructions"]["steps"]:
        if step.get("type") == "reference":
            steps.append({"type": "reference", "updateId": step["updateId"]})
            continue
        entry: dict[str, Any] = {
            "handler": step["handler"],
            "files": [by_name[n].file_id for n in step["files"]],
        }
        if step.get("handlerProperties") is not None:
            entry["handlerProperties"] = step["handlerProperties"]
        steps.append(entry)
    return json.dumps(
        {
            "manifestVersion": "5",
            "updateId": manifest["updateId"],
            "compatibility": manifest["compatibility"],
            "instructions": {"steps": steps},
            "files": {
                f.file_id: {
                    "fileName": f.file_name,
                    "sizeInBytes": f.size,
                    "hashes": {"sha256": f.sha256_b64},
                }
                for f in files
            },
            "createdDateTime": manifest["createdDateTime"],
        },
        separators=(",", ":"),
    )

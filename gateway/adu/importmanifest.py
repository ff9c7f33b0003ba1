"""An ADU import manifest v5 for one of our packages: what ``image pack --adu-manifest`` writes.

One step, handler :data:`gateway.adu.agent.HANDLER`, one file (the package itself),
``installedCriteria`` = the package's version; compatibility = its manufacturer and
model (the agent's ``compatPropertyNames``). Rules from import-schema.md
("Importing updates into Device Update for IoT Hub: schema"): provider and name match
``^[a-zA-Z0-9.-]+$`` (1-64), version has 2-4 numeric parts each at most 2147483647,
compatibility values are 1-64 characters. A version ADU cannot express (a semantic
version with a pre-release or build part) is refused rather than changed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from typing import Any

from firmware.manifest import Manifest
from gateway.adu.errors import AduManifestError

HANDLER = "mcu-gateway/package:1"  # the step handler gateway.adu.agent runs
_ID_PART = re.compile(r"[a-zA-Z0-9.-]{1,64}")
_VERSION = re.compile(r"\d+(?:\.\d+){1,3}")
_MAX_PART = 2147483647
_MAX_COMPAT_VALUE = 64
_MAX_FILES = 10  # files of one update, and compatibility sets (import-schema.md)
SUFFIX = ".importmanifest.json"  # the file name ADU's tools use


def adu_version(version: str) -> str:
    """The ADU spelling of a package version; refuses what ADU's updateId cannot hold."""
    if not _VERSION.fullmatch(version):
        raise AduManifestError(
            f"version {version!r:.40} cannot be an ADU update version "
            "(2-4 dot-separated numbers, no pre-release or build part)"
        )
    parts = version.split(".")
    if any(int(p) > _MAX_PART for p in parts):
        raise AduManifestError(
            f"version {version!r:.40}: ADU version parts are at most {_MAX_PART}"
        )
    if any(len(p) > 1 and p.startswith("0") for p in parts):
        # ADU drops leading zeros, so the installed version would no longer match.
        raise AduManifestError(f"version {version!r:.40} has leading zeros, which ADU drops")
    return version


def import_manifest(
    manifest: Manifest,
    *,
    file_name: str,
    package: bytes,
    description: str | None = None,
    created: dt.datetime | None = None,
) -> dict[str, Any]:
    if manifest.is_delta:
        raise AduManifestError("a delta package is for one base image; import the full package")
    uid = manifest.update
    for part, value in (("provider", uid.provider), ("name", uid.name)):
        if not _ID_PART.fullmatch(value):
            raise AduManifestError(
                f"update {part} {value!r:.64} must match ^[a-zA-Z0-9.-]+$ (1-64 characters) in ADU"
            )
    version = adu_version(uid.version)
    compat = {
        "manufacturer": manifest.compatibility.manufacturer,
        "model": manifest.compatibility.model,
    }
    for key, value in compat.items():
        if not 1 <= len(value) <= _MAX_COMPAT_VALUE:
            raise AduManifestError(f"compatibility {key} {value!r:.70} exceeds 64 characters")
    stamp = (created or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, Any] = {
        "updateId": {"provider": uid.provider, "name": uid.name, "version": version},
        "isDeployable": True,
        "compatibility": [compat],
        "instructions": {
            "steps": [
                {
                    "handler": HANDLER,
                    "files": [file_name],
                    "handlerProperties": {"installedCriteria": version},
                }
            ]
        },
        "files": [
            {
                "filename": file_name,
                "sizeInBytes": len(package),
                "hashes": {"sha256": base64.b64encode(hashlib.sha256(package).digest()).decode()},
            }
        ],
        "createdDateTime": stamp,
        "manifestVersion": "5.0",
    }
    if description:
        out["description"] = description[:512]
    return out


def bundle(manifests: list[dict[str, Any]], *, provider: str, name: str) -> dict[str, Any]:
    """One update for several MCU models: each model's package, picked by the agent.

    ADU deploys one update to a group, to every device class it is compatible with,
    and a group holds one active deployment; a group of mixed models therefore needs
    one update that fits them all. The step names each model's file in
    ``handlerProperties.files`` (model -> file name), which the agent reads.
    """
    if not 2 <= len(manifests) <= _MAX_FILES:
        raise AduManifestError(f"a bundle holds 2-{_MAX_FILES} packages")
    for part, value in (("provider", provider), ("name", name)):
        if not _ID_PART.fullmatch(value):
            raise AduManifestError(f"bundle {part} {value!r:.64} must match ^[a-zA-Z0-9.-]+$")
    versions = {m["updateId"]["version"] for m in manifests}
    if len(versions) != 1:
        raise AduManifestError(f"the packages have different versions: {sorted(versions)}")
    (version,) = versions
    compat: list[dict[str, str]] = []
    files: list[dict[str, Any]] = []
    by_model: dict[str, str] = {}
    for m in manifests:
        (entry,) = m["compatibility"]
        (file,) = m["files"]
        if entry in compat:
            raise AduManifestError(f"two packages for {entry['manufacturer']}/{entry['model']}")
        if any(f["filename"] == file["filename"] for f in files):
            raise AduManifestError(f"two packages named {file['filename']!r:.60}")
        compat.append(entry)
        files.append(file)
        by_model[entry["model"]] = file["filename"]
    return {
        "updateId": {"provider": provider, "name": name, "version": version},
        "isDeployable": True,
        "compatibility": compat,
        "instructions": {
            "steps": [
                {
                    "handler": HANDLER,
                    "files": [f["filename"] for f in files],
                    "handlerProperties": {"installedCriteria": version, "files": by_model},
                }
            ]
        },
        "files": files,
        "createdDateTime": max(m["createdDateTime"] for m in manifests),
        "manifestVersion": "5.0",
    }

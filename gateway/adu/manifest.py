"""The ``deviceUpdate.service`` value: its signed update manifest, read after verification.

``verify_service`` runs the whole check the reference agent runs before it acts
(signature chain, manifest hash) and returns the manifest as typed values. Shapes
follow the update manifest v4/v5 as ADU sends it (docs: "Device Update update
manifest"; the reference agent's src/utils/workflow_utils and its test data).
Sans-I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.adu import codes
from gateway.adu.errors import AduManifestError
from gateway.adu.jws import SignatureChain, check_manifest_hash, verify_chain
from gateway.adu.rootkeys import RootKeyStore

#: Manifest versions the reference agent reads (UNSUPPORTED_UPDATE_MANIFEST_VERSION otherwise).
MANIFEST_VERSIONS = ("4", "5")
_WORKFLOW_ID = re.compile(r"[\x20-\x7e]{1,256}")


@dataclass(frozen=True)
class UpdateId:
    provider: str
    name: str
    version: str

    def as_json(self) -> str:
        """``installedUpdateId``: a JSON string in this exact order (workflow_utils.c)."""
        return json.dumps(
            {"provider": self.provider, "name": self.name, "version": self.version},
            separators=(",", ":"),
        )

    def __str__(self) -> str:
        return f"{self.provider}/{self.name}/{self.version}"


@dataclass(frozen=True)
class FileEntry:
    file_id: str
    file_name: str
    size: int
    sha256: bytes  # raw digest; the manifest carries it in base64

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()


@dataclass(frozen=True)
class Step:
    handler: str | None  # None: a reference step (detached manifest)
    files: tuple[str, ...]
    installed_criteria: str | None
    detached_manifest: str | None = None
    #: handlerProperties "files": MCU model -> file name, when one step carries several
    #: models' packages (gateway.adu.importmanifest.bundle).
    files_by_model: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class UpdateManifest:
    manifest_version: str
    update_id: UpdateId
    compatibility: tuple[Mapping[str, str], ...]
    steps: tuple[Step, ...]
    files: Mapping[str, FileEntry]
    created: str


@dataclass(frozen=True)
class Workflow:
    action: int
    id: str
    retry_timestamp: str | None


@dataclass(frozen=True)
class VerifiedService:
    workflow: Workflow
    manifest: UpdateManifest
    chain: SignatureChain
    file_urls: Mapping[str, str]
    root_key_package_url: str | None


def _bad(message: str, erc: int = codes.ERC_BAD_UPDATE_MANIFEST) -> AduManifestError:
    return AduManifestError(message, erc)


def parse_workflow(value: object) -> Workflow:
    """``workflow`` of the service value: ``action`` and ``id`` required."""
    if not isinstance(value, dict):
        raise _bad("service value has no workflow object", codes.ERC_MANIFEST_VALIDATION_FAILED)
    action, wid, retry = value.get("action"), value.get("id"), value.get("retryTimestamp")
    if not isinstance(action, int) or isinstance(action, bool):
        raise _bad("workflow.action is not a number")
    if not isinstance(wid, str) or not _WORKFLOW_ID.fullmatch(wid):
        raise _bad("workflow.id is not a printable string of 1-256 characters")
    if retry is not None and not isinstance(retry, str):
        raise _bad("workflow.retryTimestamp is not a string")
    return Workflow(action, wid, retry)


def parse_manifest(text: str) -> UpdateManifest:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad(f"updateManifest is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("updateManifest is not a JSON object")
    version = str(data.get("manifestVersion", ""))
    if version not in MANIFEST_VERSIONS:
        raise _bad(
            f"manifestVersion {version!r:.10} is not one of {', '.join(MANIFEST_VERSIONS)}",
            codes.ERC_UNSUPPORTED_MANIFEST_VERSION,
        )
    try:
        uid = data["updateId"]
        update_id = UpdateId(str(uid["provider"]), str(uid["name"]), str(uid["version"]))
        compat = tuple(
            MappingProxyType({str(k): str(v) for k, v in c.items()}) for c in data["compatibility"]
        )
        steps = tuple(_step(s) for s in data["instructions"]["steps"])
        files = {fid: _file(fid, f) for fid, f in (data.get("files") or {}).items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise _bad(f"updateManifest is malformed: {exc!r:.200}") from exc
    return UpdateManifest(
        version, update_id, compat, steps, MappingProxyType(files), str(data.get("createdDateTime"))
    )


def _step(raw: Any) -> Step:
    if raw.get("type") == "reference":
        return Step(None, (), None, str(raw["detachedManifestFileId"]))
    props = raw.get("handlerProperties") or {}
    criteria = props.get("installedCriteria")
    by_model = props.get("files") or {}
    if not isinstance(by_model, dict):
        raise ValueError("handlerProperties.files is not an object")
    return Step(
        str(raw["handler"]),
        tuple(str(f) for f in raw.get("files", [])),
        None if criteria is None else str(criteria),
        files_by_model=MappingProxyType({str(k): str(v) for k, v in by_model.items()}),
    )


def _file(file_id: str, raw: Any) -> FileEntry:
    size = raw["sizeInBytes"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"file {file_id}: sizeInBytes is not a size")
    try:
        digest = base64.b64decode(raw["hashes"]["sha256"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"file {file_id}: sha256 is not base64") from exc
    if len(digest) != 32:
        raise ValueError(f"file {file_id}: sha256 is not 32 bytes")
    return FileEntry(file_id, str(raw["fileName"]), size, digest)


def verify_service(value: object, store: RootKeyStore) -> VerifiedService:
    """Everything the agent checks before acting on ``deviceUpdate.service``."""
    if not isinstance(value, dict):
        raise _bad("service value is not a JSON object", codes.ERC_MANIFEST_VALIDATION_FAILED)
    workflow = parse_workflow(value.get("workflow"))
    chain = verify_chain(value.get("updateManifestSignature"), store)
    check_manifest_hash(chain, value.get("updateManifest"))
    manifest = parse_manifest(value["updateManifest"])
    urls = value.get("fileUrls") or {}
    if not isinstance(urls, dict) or not all(isinstance(u, str) for u in urls.values()):
        raise _bad("fileUrls is not an object of URLs", codes.ERC_BAD_FILES_OR_FILEURLS)
    rkp = value.get("rootKeyPackageUrl")
    return VerifiedService(
        workflow,
        manifest,
        chain,
        MappingProxyType({str(k): v for k, v in urls.items()}),
        rkp if isinstance(rkp, str) and rkp else None,
    )

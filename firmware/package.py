"""The package file: header, manifest, payload, signature block (see docs/package.md).

``parse`` checks structure only. ``verify`` authenticates the manifest, then
binds the payload to it. Every single-byte change to a package makes one of
them fail, which the property tests check.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from firmware.errors import PackageError, VerificationError
from firmware.keys import Algorithm, PrivateKey, PublicKey, algorithm_of, key_id, sign
from firmware.magic import MAGIC
from firmware.manifest import Compatibility, Manifest, UpdateId
from firmware.reasons import ReasonCode

FORMAT_VERSION = 1
MAX_MANIFEST_LEN = 64 * 1024
_HEADER = struct.Struct(">8sHHIQ")  # magic, format version, reserved, manifest len, payload len
_SIG_HEADER = struct.Struct(">BBH32s")  # algorithm, reserved, signature len, key id
HEADER_LEN = _HEADER.size
SIG_HEADER_LEN = _SIG_HEADER.size
_NO_KEY = bytes(32)


@dataclass(frozen=True)
class Signature:
    algorithm: Algorithm
    key_id: bytes
    value: bytes

    @property
    def signed(self) -> bool:
        return self.algorithm is not Algorithm.NONE


@dataclass(frozen=True)
class RawPackage:
    """A structurally valid package whose contents are not yet authenticated."""

    manifest_bytes: bytes
    payload: bytes
    signature: Signature


@dataclass(frozen=True)
class Package:
    """A package whose manifest authenticates and whose payload matches it."""

    manifest: Manifest
    manifest_bytes: bytes
    payload: bytes
    signature: Signature


def build(manifest: Manifest, payload: bytes, key: PrivateKey | None = None) -> bytes:
    """Serialise a package; with no key it is unsigned (integrity digest only)."""
    if len(payload) != manifest.payload_size or (
        hashlib.sha256(payload).hexdigest() != manifest.payload_sha256
    ):
        raise ValueError("payload does not match the manifest's size and sha256")
    mbytes = manifest.to_bytes()
    return _serialise(mbytes, payload, _signature(mbytes, key))


def resign(data: bytes, key: PrivateKey | None) -> bytes:
    """Replace the signature block; the old one need not be trusted, but must be intact."""
    raw = parse(data)
    _check_integrity(raw)
    return _serialise(raw.manifest_bytes, raw.payload, _signature(raw.manifest_bytes, key))


def manifest_for(
    payload: bytes,
    *,
    provider: str,
    name: str,
    version: str,
    manufacturer: str,
    model: str,
    hwrev: str | None = None,
    min_installed_version: str | None = None,
    delta_base: str | None = None,
    delta_base_sha256: str | None = None,
    delta_target: bytes | None = None,
    target_image: int | None = None,
) -> Manifest:
    """A manifest whose payload size and hash are computed from ``payload``."""
    return Manifest(
        update=UpdateId(provider, name, version),
        compatibility=Compatibility(manufacturer, model, hwrev),
        payload_size=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        min_installed_version=min_installed_version,
        delta_base=delta_base,
        delta_base_sha256=delta_base_sha256,
        delta_target_size=None if delta_target is None else len(delta_target),
        delta_target_sha256=(
            None if delta_target is None else hashlib.sha256(delta_target).hexdigest()
        ),
        target_image=target_image,
    )


def parse(data: bytes) -> RawPackage:
    """Split a file into its regions, refusing any length that does not add up exactly."""
    if len(data) < HEADER_LEN:
        raise PackageError(
            ReasonCode.TRUNCATED,
            f"file is {len(data)} bytes, shorter than the {HEADER_LEN}-byte header",
        )
    magic, version, reserved, mlen, plen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PackageError(ReasonCode.MALFORMED, "not a firmware package (bad magic)")
    if version != FORMAT_VERSION:
        raise PackageError(
            ReasonCode.UNSUPPORTED_FORMAT,
            f"package format {version} is not supported (expected {FORMAT_VERSION})",
        )
    if reserved != 0:
        raise PackageError(ReasonCode.MALFORMED, "reserved header field is not zero")
    if mlen > MAX_MANIFEST_LEN:
        raise PackageError(
            ReasonCode.MALFORMED, f"manifest length {mlen} exceeds {MAX_MANIFEST_LEN}"
        )
    sig_at = HEADER_LEN + mlen + plen
    if len(data) < sig_at + SIG_HEADER_LEN:
        raise PackageError(
            ReasonCode.TRUNCATED,
            f"file is {len(data)} bytes but its header declares at least {sig_at + SIG_HEADER_LEN}",
        )
    alg_id, sreserved, slen, kid = _SIG_HEADER.unpack_from(data, sig_at)
    try:
        alg = Algorithm(alg_id)
    except ValueError:
        raise PackageError(ReasonCode.MALFORMED, f"unknown signature algorithm {alg_id}") from None
    if sreserved != 0:
        raise PackageError(ReasonCode.MALFORMED, "reserved signature field is not zero")
    if slen != alg.signature_length:
        raise PackageError(
            ReasonCode.MALFORMED,
            f"{alg.label} signature must be {alg.signature_length} bytes, not {slen}",
        )
    if alg is Algorithm.NONE and kid != _NO_KEY:
        raise PackageError(ReasonCode.MALFORMED, "unsigned package has a non-zero key id")
    end = sig_at + SIG_HEADER_LEN + slen
    if len(data) < end:
        raise PackageError(
            ReasonCode.TRUNCATED, f"file is {len(data)} bytes but its signature block ends at {end}"
        )
    if len(data) > end:
        raise PackageError(
            ReasonCode.MALFORMED, f"{len(data) - end} unexpected byte(s) after the signature block"
        )
    return RawPackage(
        manifest_bytes=bytes(data[HEADER_LEN : HEADER_LEN + mlen]),
        payload=bytes(data[HEADER_LEN + mlen : sig_at]),
        signature=Signature(alg, kid, bytes(data[end - slen : end])),
    )


def verify(data: bytes, trusted: Iterable[PublicKey], *, allow_unsigned: bool = False) -> Package:
    """Authenticate a package against trust anchors; raise with the exact reason otherwise.

    Order matters: the manifest is authenticated before it is believed, and the
    payload is then checked against the authenticated manifest.
    """
    raw = parse(data)
    sig = raw.signature
    if not sig.signed:
        if not allow_unsigned:
            raise VerificationError(
                ReasonCode.UNSIGNED, "package is unsigned and the policy requires a signature"
            )
        _check_integrity(raw)
    else:
        anchors = {k.key_id: k for k in trusted}
        anchor = anchors.get(sig.key_id)
        if anchor is None:
            raise VerificationError(
                ReasonCode.UNTRUSTED_KEY,
                f"signed by key {sig.key_id.hex()[:16]}…, which is not a trusted key",
            )
        if anchor.algorithm is not sig.algorithm or not anchor.verify(
            sig.value, raw.manifest_bytes
        ):
            raise VerificationError(
                ReasonCode.SIGNATURE_INVALID,
                f"{sig.algorithm.label} signature by key "
                f"{sig.key_id.hex()[:16]}… does not verify over the "
                "manifest (manifest or signature altered)",
            )
    return _bind_payload(raw)


def _check_integrity(raw: RawPackage) -> Package:
    """Integrity without trust: the digest or signature block must match what it covers."""
    sig = raw.signature
    if not sig.signed and hashlib.sha256(raw.manifest_bytes).digest() != sig.value:
        raise VerificationError(
            ReasonCode.SIGNATURE_INVALID,
            "manifest digest does not match (manifest or digest altered)",
        )
    return _bind_payload(raw)


def _bind_payload(raw: RawPackage) -> Package:
    manifest = Manifest.from_bytes(raw.manifest_bytes)
    if manifest.payload_size != len(raw.payload):
        raise PackageError(
            ReasonCode.MANIFEST_INVALID,
            f"manifest payload size {manifest.payload_size} != header "
            f"payload length {len(raw.payload)}",
        )
    actual = hashlib.sha256(raw.payload).hexdigest()
    if actual != manifest.payload_sha256:
        raise PackageError(
            ReasonCode.PAYLOAD_HASH_MISMATCH,
            f"payload SHA-256 {actual[:16]}… != manifest "
            f"{manifest.payload_sha256[:16]}… (payload altered)",
        )
    return Package(manifest, raw.manifest_bytes, raw.payload, raw.signature)


def _signature(manifest_bytes: bytes, key: PrivateKey | None) -> Signature:
    if key is None:
        return Signature(Algorithm.NONE, _NO_KEY, hashlib.sha256(manifest_bytes).digest())
    return Signature(algorithm_of(key), key_id(key.public_key()), sign(key, manifest_bytes))


def _serialise(manifest_bytes: bytes, payload: bytes, sig: Signature) -> bytes:
    return b"".join(
        (
            _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(manifest_bytes), len(payload)),
            manifest_bytes,
            payload,
            _SIG_HEADER.pack(sig.algorithm, 0, len(sig.value), sig.key_id),
            sig.value,
        )
    )

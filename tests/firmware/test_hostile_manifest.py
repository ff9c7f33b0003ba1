"""Hostile manifests end in MANIFEST_INVALID, and ECDSA signatures are low-s only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware import keys
from firmware.errors import PackageError, VerificationError
from firmware.keys import P256_ORDER, Algorithm, PublicKey
from firmware.manifest import Manifest
from firmware.package import _serialise, _signature, verify
from firmware.reasons import ReasonCode
from tests.firmware.conftest import make_manifest

PAYLOAD = b"\x42" * 64


def hostile_manifests() -> dict[str, bytes]:
    """Canonical-looking JSON that used to escape the parser as a traceback."""
    good = make_manifest(PAYLOAD).to_dict()
    huge = json.dumps(good, sort_keys=True, separators=(",", ":"))
    huge = huge.replace(f'"size":{len(PAYLOAD)}', '"size":' + "9" * 5000)
    nested = dict(good, deltaBase="[" * 20_000 + "]" * 20_000)
    deep = json.dumps(nested, sort_keys=True, separators=(",", ":")).replace(
        '"' + "[" * 20_000 + "]" * 20_000 + '"', "[" * 20_000 + "]" * 20_000
    )
    return {"huge-integer": huge.encode(), "deep-nesting": deep.encode()}


def unsigned_package(manifest_bytes: bytes) -> bytes:
    return _serialise(manifest_bytes, PAYLOAD, _signature(manifest_bytes, None))


@pytest.mark.parametrize("name", sorted(hostile_manifests()))
def test_hostile_manifest_is_manifest_invalid(name: str) -> None:
    data = hostile_manifests()[name]
    with pytest.raises(PackageError) as info:
        Manifest.from_bytes(data)
    assert info.value.reason is ReasonCode.MANIFEST_INVALID
    with pytest.raises(PackageError) as info:
        verify(unsigned_package(data), [], allow_unsigned=True)
    assert info.value.reason is ReasonCode.MANIFEST_INVALID


def test_ecdsa_high_s_twin_is_refused() -> None:
    key = keys.generate(Algorithm.ECDSA_P256_SHA256)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    anchor = PublicKey.from_key(key.public_key())
    message = hashlib.sha256(b"manifest").digest()
    for _ in range(16):  # about half of raw ECDSA signatures come out high-s
        sig = keys.sign(key, message)
        s = int.from_bytes(sig[32:], "big")
        assert 0 < s <= P256_ORDER // 2  # sign normalises
        assert anchor.verify(sig, message)
        twin = sig[:32] + (P256_ORDER - s).to_bytes(32, "big")
        assert not anchor.verify(twin, message)  # same (r, s) maths, other bytes


def test_signed_package_with_high_s_signature_is_signature_invalid(tmp_path: Path) -> None:
    key = keys.generate(Algorithm.ECDSA_P256_SHA256)
    manifest = make_manifest(PAYLOAD).to_bytes()
    sig = _signature(manifest, key)
    s = int.from_bytes(sig.value[32:], "big")
    high = type(sig)(
        sig.algorithm, sig.key_id, sig.value[:32] + (P256_ORDER - s).to_bytes(32, "big")
    )
    anchor = PublicKey.from_key(key.public_key())
    verify(_serialise(manifest, PAYLOAD, sig), [anchor])
    with pytest.raises(VerificationError) as info:
        verify(_serialise(manifest, PAYLOAD, high), [anchor])
    assert info.value.reason is ReasonCode.SIGNATURE_INVALID

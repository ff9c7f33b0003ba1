from __future__ import annotations

import hashlib

import pytest

from firmware import keys
from firmware.errors import PackageError, VerificationError
from firmware.keys import Algorithm, PrivateKey, PublicKey
from firmware.manifest import Manifest
from firmware.package import HEADER_LEN, build, manifest_for, parse, resign, verify
from firmware.reasons import ReasonCode
from tests.firmware.conftest import make_manifest


def test_sign_verify_round_trip(signed: bytes, anchor: PublicKey, payload: bytes) -> None:
    pkg = verify(signed, [anchor])
    assert pkg.payload == payload
    assert pkg.manifest.update.version == "1.2.3"
    assert pkg.signature.key_id == anchor.key_id
    assert pkg.signature.algorithm is anchor.algorithm


def test_any_of_several_trusted_keys_verifies(signed: bytes, anchor: PublicKey) -> None:
    other = PublicKey.from_key(keys.generate(Algorithm.ED25519).public_key())
    assert verify(signed, [other, anchor]).manifest.payload_size == 3000


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def test_flipped_payload_bit_is_payload_hash_mismatch(signed: bytes, anchor: PublicKey) -> None:
    mlen = len(parse(signed).manifest_bytes)
    with pytest.raises(PackageError) as exc:
        verify(_flip(signed, HEADER_LEN + mlen + 100), [anchor])
    assert exc.value.reason is ReasonCode.PAYLOAD_HASH_MISMATCH
    assert "payload" in exc.value.message


def test_flipped_manifest_bit_is_signature_invalid(signed: bytes, anchor: PublicKey) -> None:
    at = signed.index(b'"1.2.3"') + 5  # '3' -> '2': still valid, canonical JSON
    with pytest.raises(VerificationError) as exc:
        verify(_flip(signed, at), [anchor])
    assert exc.value.reason is ReasonCode.SIGNATURE_INVALID
    assert "manifest" in exc.value.message


def test_untrusted_key(signed: bytes) -> None:
    stranger = PublicKey.from_key(keys.generate(Algorithm.ED25519).public_key())
    with pytest.raises(VerificationError) as exc:
        verify(signed, [stranger])
    assert exc.value.reason is ReasonCode.UNTRUSTED_KEY
    assert "not a trusted key" in exc.value.message


def test_unsigned_refused_by_default_and_allowed_when_configured(payload: bytes) -> None:
    data = build(make_manifest(payload), payload)
    with pytest.raises(VerificationError) as exc:
        verify(data, [])
    assert exc.value.reason is ReasonCode.UNSIGNED
    assert verify(data, [], allow_unsigned=True).payload == payload


@pytest.mark.parametrize("cut", [0, 5, HEADER_LEN, HEADER_LEN + 10, -1, -40])
def test_truncated(signed: bytes, anchor: PublicKey, cut: int) -> None:
    with pytest.raises(PackageError) as exc:
        verify(signed[:cut], [anchor])
    assert exc.value.reason is ReasonCode.TRUNCATED
    assert "bytes" in exc.value.message


def test_trailing_bytes_and_bad_magic_are_malformed(signed: bytes, anchor: PublicKey) -> None:
    for bad in (signed + b"\0", b"PK" + signed[2:]):
        with pytest.raises(PackageError) as exc:
            verify(bad, [anchor])
        assert exc.value.reason is ReasonCode.MALFORMED


def test_resign_replaces_the_signature(signed: bytes, signing_key: PrivateKey) -> None:
    new_key = keys.generate(Algorithm.ECDSA_P256_SHA256)
    new_anchor = PublicKey.from_key(new_key.public_key())
    again = resign(signed, new_key)
    assert verify(again, [new_anchor]).signature.key_id == new_anchor.key_id
    with pytest.raises(VerificationError):
        verify(again, [PublicKey.from_key(signing_key.public_key())])


def test_build_refuses_a_payload_that_does_not_match(payload: bytes) -> None:
    with pytest.raises(ValueError, match="payload"):
        build(make_manifest(payload), payload + b"x")


def test_key_id_is_sha256_of_spki_der(anchor: PublicKey) -> None:
    from cryptography.hazmat.primitives import serialization

    der = anchor.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert anchor.key_id == hashlib.sha256(der).digest()


def test_target_image_is_signed_into_the_manifest(
    payload: bytes, signing_key: PrivateKey, anchor: PublicKey
) -> None:
    """``targetImage`` names the image of a multi-image device (MCUboot image number)."""
    manifest = manifest_for(
        payload, provider="contoso", name="net-core", version="1.2.3",
        manufacturer="zephyr", model="nrf5340dk", target_image=1,
    )  # fmt: skip
    assert b'"targetImage":1' in manifest.to_bytes()
    data = build(manifest, payload, signing_key)
    assert verify(data, [anchor]).manifest.target_image == 1
    plain = make_manifest(payload)
    assert b"targetImage" not in plain.to_bytes()  # absent unless given: old readers unchanged
    assert Manifest.from_bytes(plain.to_bytes()).target_image is None
    with pytest.raises(ValueError, match="targetImage"):
        manifest_for(
            payload, provider="c", name="n", version="1.0.0", manufacturer="m", model="x",
            target_image=-1,
        )  # fmt: skip

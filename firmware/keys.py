"""Signing keys: Ed25519 and ECDSA P-256, identified by the SHA-256 of their public key.

A key id is ``SHA-256(DER SubjectPublicKeyInfo)``, which any tool can compute
(``openssl pkey -pubin -outform DER | sha256sum``). ECDSA signatures are stored
as fixed-size ``r || s`` (32 + 32 bytes, big-endian), the form MCU crypto
libraries use, rather than variable-length DER. Only the low-s form
(s <= n/2) is accepted: (r, s) and (r, n - s) both verify mathematically, and
accepting both would let two different package files carry one signed
manifest. ``sign`` always produces low-s.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from firmware.errors import KeyFileError
from firmware.reasons import ReasonCode

#: Order of the P-256 group; s above half of it is the malleable twin of n - s.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class Algorithm(IntEnum):
    NONE = 0  # unsigned: the "signature" is SHA-256(manifest), integrity only
    ED25519 = 1  # Ed25519 over the manifest bytes, 64-byte signature
    ECDSA_P256_SHA256 = 2  # ECDSA P-256 with SHA-256 over the manifest, 64-byte r||s

    @property
    def signature_length(self) -> int:
        return 32 if self is Algorithm.NONE else 64

    @property
    def label(self) -> str:
        return {0: "none", 1: "ed25519", 2: "ecdsa-p256"}[self.value]


@dataclass(frozen=True)
class PublicKey:
    """A trust anchor: the key, its algorithm and its id."""

    algorithm: Algorithm
    key: PublicKeyObject
    key_id: bytes

    @classmethod
    def from_key(cls, key: PublicKeyObject) -> PublicKey:
        return cls(algorithm_of(key), key, key_id(key))

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, message)
            else:
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if not 0 < s <= P256_ORDER // 2:
                    return False  # high-s (or zero): the malleable twin is refused
                self.key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def algorithm_of(key: PrivateKey | PublicKeyObject) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return Algorithm.ED25519
    if isinstance(key.curve, ec.SECP256R1):
        return Algorithm.ECDSA_P256_SHA256
    raise KeyFileError(ReasonCode.KEY_INVALID, f"unsupported curve {key.curve.name}")


def key_id(key: PublicKeyObject) -> bytes:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is Algorithm.ECDSA_P256_SHA256:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"cannot generate a key for {algorithm.label}")


def sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    if s > P256_ORDER // 2:
        s = P256_ORDER - s  # normalise to low-s, the only form verify accepts
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_pem(key: PrivateKey | PublicKeyObject) -> bytes:
    pub = (
        key.public_key()
        if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        else key
    )
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private_key(path: Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write PKCS#8 PEM, created 0600 so the secret is never world-readable, even briefly."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is ignored when the file already existed
        fh.write(pem)


def load_private_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # Never echo the file contents: it is a secret.
        raise KeyFileError(
            ReasonCode.KEY_INVALID, f"{path}: not a readable unencrypted PEM private key"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(ReasonCode.KEY_INVALID, f"{path}: only Ed25519 and P-256 keys")
    algorithm_of(key)
    return key


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM public key (a private key file is refused: trust files hold no secrets)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(ReasonCode.KEY_INVALID, f"{path}: not a PEM public key") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyFileError(ReasonCode.KEY_INVALID, f"{path}: only Ed25519 and P-256 keys")
    return PublicKey.from_key(key)

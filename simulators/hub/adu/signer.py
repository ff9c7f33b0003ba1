"""The emulator's ADU signing keys: a test root key, a signing key, and what they sign.

It produces what ADU's service produces (github Azure/iot-hub-device-update,
src/utils/jws_utils and src/utils/rootkeypackage_utils describe the verifier side):

* ``updateManifestSignature``: compact JWS, RS256, header ``{"alg", "sjwk"}``; ``sjwk``
  is a compact JWS signed by the root key (header ``{"alg", "kid"}``) over the signing
  key's JWK; the payload is ``{"sha256": base64(SHA-256(updateManifest))}``.
* root key packages: ``protected`` serialised compact, signed by each root key at
  the index of that key in ``protected.rootKeys``.

The root key is a *test* key (kid ending ``.T`` like Microsoft's test keys): a gateway
trusts it only when its configuration names the JWK set the emulator publishes.
Sans-I/O except :meth:`TestSigner.load_or_create`, which keeps the keys across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT_KID = "EMU.ADU.R.T"
SIGNING_KID = "EMU.ADU.R.S.T"
_BITS = 2048  # Microsoft's signing keys are 3072-bit; 2048 keeps key generation quick


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = pub.public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "n": _int_b64url(numbers.n),
        "e": _int_b64url(numbers.e),
        "alg": "RS256",
    }


def compact_jws(header: dict[str, Any], payload: bytes, key: rsa.RSAPrivateKey) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(payload)
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


class TestSigner:
    """One root key and one signing key, with everything they are used to sign."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(
        self,
        root: rsa.RSAPrivateKey | None = None,
        signing: rsa.RSAPrivateKey | None = None,
        *,
        root_kid: str = ROOT_KID,
        signing_kid: str = SIGNING_KID,
    ) -> None:
        self.root = root or rsa.generate_private_key(public_exponent=65537, key_size=_BITS)
        self.signing = signing or rsa.generate_private_key(public_exponent=65537, key_size=_BITS)
        self.root_kid = root_kid
        self.signing_kid = signing_kid

    @classmethod
    def load_or_create(cls, state_dir: Path) -> TestSigner:
        """Keys from ``state_dir`` (made on first use), so a restarted emulator signs alike."""
        keys = []
        for name in ("adu-root.pem", "adu-signing.pem"):
            path = state_dir / name
            if path.exists():
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                assert isinstance(key, rsa.RSAPrivateKey)
            else:
                key = rsa.generate_private_key(public_exponent=65537, key_size=_BITS)
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pem)
                tmp.chmod(0o600)
                tmp.replace(path)
            keys.append(key)
        return cls(keys[0], keys[1])

    def root_jwks(self) -> dict[str, Any]:
        """The root key as a JWK set: what a gateway configures as its test root keys."""
        return {"keys": [public_jwk(self.root, self.root_kid)]}

    def sjwk(self) -> str:
        payload = json.dumps(public_jwk(self.signing, self.signing_kid), separators=(",", ":"))
        return compact_jws({"alg": "RS256", "kid": self.root_kid}, payload.encode(), self.root)

    def sign_manifest(self, manifest: str) -> str:
        """``updateManifestSignature`` for the exact manifest string."""
        digest = base64.b64encode(hashlib.sha256(manifest.encode()).digest()).decode()
        payload = json.dumps({"sha256": digest}, separators=(",", ":")).encode()
        return compact_jws({"alg": "RS256", "sjwk": self.sjwk()}, payload, self.signing)

    def signing_key_hash(self) -> str:
        """base64url SHA-256 of the signing key's PKCS#1 DER, as disabledSigningKeys lists it."""
        der = self.signing.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        return b64url(hashlib.sha256(der).digest())

    def root_key_package(
        self,
        *,
        disabled_root_keys: Iterable[str] = (),
        disabled_signing_keys: Iterable[str] = (),
        version: int = 1,
        is_test: bool = True,
        signers: Iterable[rsa.RSAPrivateKey] | None = None,
    ) -> dict[str, Any]:
        """A root key package listing the root key, signed by ``signers`` (the root key)."""
        numbers = self.root.public_key().public_numbers()
        protected = {
            "isTest": is_test,
            "version": version,
            "published": int(time.time()),
            "disabledRootKeys": list(disabled_root_keys),
            "disabledSigningKeys": [{"alg": "SHA256", "hash": h} for h in disabled_signing_keys],
            "rootKeys": {
                self.root_kid: {"keyType": "RSA", "n": _int_b64url(numbers.n), "e": numbers.e}
            },
        }
        data = json.dumps(protected, separators=(",", ":")).encode()
        sigs = [
            {"alg": "RS256", "sig": b64url(k.sign(data, padding.PKCS1v15(), hashes.SHA256()))}
            for k in (signers if signers is not None else [self.root])
        ]
        return {"protected": protected, "signatures": sigs}

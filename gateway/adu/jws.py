"""The signature chain of an ADU update manifest, verified as the reference agent does.

``updateManifestSignature`` is a compact JWS (RS256). Its header carries ``sjwk``,
itself a compact JWS whose payload is the signing key (an RSA JWK) and whose header
names, by ``kid``, the root key that signed it. The JWS payload is
``{"sha256": base64(SHA-256(updateManifest))}`` over the exact manifest string.
Order and outcomes follow ``VerifyJWSWithSJWK``/``VerifySJWK``/``VerifyJWSWithKey``
(src/utils/jws_utils/src/jws_utils.c) and ``workflow_validate_update_manifest_signature``
(src/utils/workflow_utils/src/workflow_utils.c) of github Azure/iot-hub-device-update.
Sans-I/O: strings and keys in, a verdict or :class:`AduVerifyError` out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from gateway.adu.codes import ERC_MANIFEST_VALIDATION_FAILED, JwsResult, jws_erc
from gateway.adu.errors import AduVerifyError
from gateway.adu.rootkeys import RootKeyStore, RootKeyUnusable

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
#: The only algorithm ADU signs with (crypto_lib.c knows RS256 alone for JWS).
ALGORITHM = "RS256"
#: Longest JWS accepted: the real one is about 3 KB; the twin caps a value at 32 KB anyway.
MAX_JWS_CHARS = 64 * 1024


def b64url_decode(text: str) -> bytes:
    """Base64url, padding optional (JWS omits it); anything else in the text is refused."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def key_number(text: str) -> int:
    """A key number in base64url or plain base64: Microsoft's signing keys use the latter."""
    return int.from_bytes(b64url_decode(text.replace("+", "-").replace("/", "_")), "big")


def rsa_key(n: str, e: str | int) -> RSAPublicKey:
    """An RSA public key from a JWK's ``n`` and ``e`` (base64(url), or ``e`` as an int)."""
    exponent = e if isinstance(e, int) else key_number(e)
    modulus = key_number(n)
    return RSAPublicNumbers(exponent, modulus).public_key()


@dataclass(frozen=True)
class Compact:
    """A compact JWS split into its three parts (still encoded) and its decoded header."""

    header_b64: str
    payload_b64: str
    signature_b64: str
    header: dict[str, Any]

    @property
    def signing_input(self) -> bytes:
        return f"{self.header_b64}.{self.payload_b64}".encode("ascii")

    def payload_json(self) -> dict[str, Any]:
        try:
            value = json.loads(b64url_decode(self.payload_b64))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _fail(JwsResult.FAILED, "payload is not base64url JSON") from exc
        if not isinstance(value, dict):
            raise _fail(JwsResult.FAILED, "payload is not a JSON object")
        return value


def _fail(result: JwsResult, message: str) -> AduVerifyError:
    return AduVerifyError(f"{message} ({result.name})", jws_erc(result), result)


def split(token: object, what: str = "JWS") -> Compact:
    if not isinstance(token, str) or not token or len(token) > MAX_JWS_CHARS:
        raise _fail(JwsResult.BAD_STRUCTURE, f"{what} is not a non-empty string")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _fail(JwsResult.BAD_STRUCTURE, f"{what} is not header.payload.signature")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(JwsResult.INVALID_ENCODING_JWS_HEADER, f"{what} header is not JSON") from exc
    if not isinstance(header, dict):
        raise _fail(JwsResult.INVALID_ENCODING_JWS_HEADER, f"{what} header is not an object")
    return Compact(parts[0], parts[1], parts[2], header)


def verify_with_key(jws: Compact, key: RSAPublicKey, what: str) -> None:
    """VerifyJWSWithKey: the header's ``alg`` must be RS256 and the signature must hold."""
    alg = jws.header.get("alg")
    if not isinstance(alg, str):
        raise _fail(JwsResult.BAD_STRUCTURE, f"{what} header has no alg")
    if alg != ALGORITHM:
        raise _fail(JwsResult.INVALID_SIGNATURE, f"{what} alg {alg!r:.20} is not {ALGORITHM}")
    try:
        signature = b64url_decode(jws.signature_b64)
        key.verify(signature, jws.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature) as exc:
        raise _fail(JwsResult.INVALID_SIGNATURE, f"{what} signature does not verify") from exc


@dataclass(frozen=True)
class SignatureChain:
    """Who signed: the root key's kid, the signing key's kid, and the signed hash."""

    root_kid: str
    signing_kid: str
    manifest_sha256: bytes


def verify_chain(token: object, store: RootKeyStore) -> SignatureChain:
    """Verify ``updateManifestSignature`` up to a root key of ``store``; return its payload."""
    jws = split(token, "updateManifestSignature")
    sjwk_token = jws.header.get("sjwk")
    if not isinstance(sjwk_token, str) or not sjwk_token:
        raise _fail(JwsResult.BAD_STRUCTURE, "updateManifestSignature header has no sjwk")
    sjwk = split(sjwk_token, "sjwk")
    kid = sjwk.header.get("kid")
    if not isinstance(kid, str):
        raise _fail(JwsResult.FAILED, "sjwk header has no kid")
    try:
        root = store.key_for(kid)
    except RootKeyUnusable as exc:
        raise _fail(exc.result, str(exc)) from exc
    verify_with_key(sjwk, root, f"sjwk (signed by root key {kid!r:.40})")
    jwk = sjwk.payload_json()
    n, e = jwk.get("n"), jwk.get("e")
    # IsSigningKeyDisallowed: AQAB (65537) is the only exponent accepted.
    if not isinstance(n, str) or not n or e != "AQAB":
        raise _fail(JwsResult.INVALID_SJWK_PAYLOAD, "signing key is not an RSA JWK with e=AQAB")
    try:
        signing_key = rsa_key(n, e)
    except ValueError as exc:
        raise _fail(JwsResult.INVALID_SJWK_PAYLOAD, "signing key modulus is not base64") from exc
    signing_kid = str(jwk.get("kid", ""))
    if store.signing_key_disabled(signing_key):
        raise _fail(
            JwsResult.DISALLOWED_SIGNING_KEY,
            f"signing key {signing_kid!r:.40} is disabled by the root key package",
        )
    verify_with_key(jws, signing_key, f"updateManifestSignature (signing key {signing_kid!r:.40})")
    digest = jws.payload_json().get("sha256")
    try:
        if not isinstance(digest, str):
            raise ValueError("no sha256")
        raw = base64.b64decode(digest, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise AduVerifyError(
            "updateManifestSignature payload has no base64 sha256", ERC_MANIFEST_VALIDATION_FAILED
        ) from exc
    return SignatureChain(kid, signing_kid, raw)


def check_manifest_hash(chain: SignatureChain, manifest: object) -> None:
    """Json_ValidateManifestHash: the signed hash must be SHA-256 of the exact manifest string."""
    if not isinstance(manifest, str):
        raise AduVerifyError("updateManifest is not a string", ERC_MANIFEST_VALIDATION_FAILED)
    actual = hashlib.sha256(manifest.encode("utf-8")).digest()
    if not hmac.compare_digest(actual, chain.manifest_sha256):
        raise AduVerifyError(
            "updateManifest does not match the signed hash (altered after signing)",
            ERC_MANIFEST_VALIDATION_FAILED,
        )

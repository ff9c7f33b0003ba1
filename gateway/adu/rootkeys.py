"""ADU root keys: the built-in ones, root key packages, and what those packages disable.

Rules from the reference agent (github Azure/iot-hub-device-update, src/utils/root_key_utils
and src/utils/rootkeypackage_utils, schema rootkeypackage.schema.json):

* The production root keys are built in (``data/production-root-keys.json``, copied
  from root_key_list.c). Test root keys are used only when the configuration names a
  file of them (the reference agent needs a build with EMBED_TEST_ROOT_KEYS).
* A root key package is ``{"protected": {...}, "signatures": [{"alg": "RS256", "sig"}]}``.
  Every built-in root key must be listed in ``protected.rootKeys`` and the signature at
  the same index must verify over the compact serialisation of ``protected``
  (RootKeyUtility_ValidateRootKeyPackageWithHardcodedKeys).
* ``disabledRootKeys`` names kids no longer trusted; ``disabledSigningKeys`` holds
  base64url SHA-256 hashes of signing keys' DER public keys. The agent hashes PKCS#1
  DER with OpenSSL 1.x and the OpenSSL 3 default (SubjectPublicKeyInfo) otherwise
  (crypto_lib.c, CryptoUtils_GenerateRsaPublicKey); either hash disables a key here.
* ``isTest`` packages are refused unless test root keys are configured, and the other
  way round (ADUC_ERC_ROOTKEY_TEST_PKG_ON_PROD_AGENT, ..._PROD_PKG_ON_TEST_AGENT).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.adu import codes
from gateway.adu.codes import JwsResult
from gateway.adu.errors import RootKeyPackageError

#: Largest root key package accepted (Microsoft's is about 2 KB).
MAX_PACKAGE_BYTES = 256 * 1024


class RootKeyUnusable(Exception):
    """No usable root key for a kid; ``result`` says why, as VerifySJWK does."""

    def __init__(self, result: JwsResult, message: str) -> None:
        super().__init__(message)
        self.result = result


def key_hashes(key: RSAPublicKey) -> frozenset[bytes]:
    """SHA-256 of the key's DER forms that the reference agent may hash (see module doc)."""
    forms = (serialization.PublicFormat.PKCS1, serialization.PublicFormat.SubjectPublicKeyInfo)
    return frozenset(
        hashlib.sha256(key.public_bytes(serialization.Encoding.DER, f)).digest() for f in forms
    )


def load_jwk_set(text: str, where: str) -> dict[str, RSAPublicKey]:
    """``{"keys": [{"kid", "n", "e"}]}`` -> kid -> key; ``e`` as an int or base64url."""
    from gateway.adu.jws import rsa_key

    try:
        data = json.loads(text)
        keys = {str(k["kid"]): rsa_key(k["n"], k["e"]) for k in data["keys"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise RootKeyPackageError(f"{where}: not a set of RSA root keys ({exc})") from exc
    if not keys:
        raise RootKeyPackageError(f"{where}: no keys")
    return keys


def production_keys() -> dict[str, RSAPublicKey]:
    text = (resources.files("gateway.adu") / "data" / "production-root-keys.json").read_text()
    return load_jwk_set(text, "production-root-keys.json")


def protected_serialisations(protected: Any) -> tuple[bytes, ...]:
    """What the signatures cover: parson's compact form, with and without escaped slashes.

    The agent re-serialises the parsed ``protected`` value (json_serialize_to_string);
    parson writes it compact and, by default, escapes ``/`` as ``\\/``.
    """
    compact = json.dumps(protected, separators=(",", ":"), ensure_ascii=False)
    escaped = compact.replace("/", "\\/")
    return (compact.encode(), escaped.encode()) if escaped != compact else (compact.encode(),)


@dataclass(frozen=True)
class RootKeyPackage:
    version: int
    published: int
    is_test: bool
    disabled_root_keys: frozenset[str]
    disabled_signing_keys: frozenset[bytes]  # SHA-256 digests
    root_keys: Mapping[str, RSAPublicKey]  # in the package's order
    protected: Any  # the parsed "protected" object, for signature checks
    signatures: tuple[bytes, ...]


def parse_package(raw: bytes | str) -> RootKeyPackage:
    from gateway.adu.jws import b64url_decode, rsa_key

    if len(raw) > MAX_PACKAGE_BYTES:
        raise RootKeyPackageError(
            "root key package is too large", codes.ERC_ROOTKEY_PKG_FAIL_JSON_PARSE
        )
    try:
        data = json.loads(raw)
        prot = data["protected"]
        keys: dict[str, RSAPublicKey] = {}
        for kid, entry in prot["rootKeys"].items():
            if entry.get("keyType") != "RSA":
                raise ValueError(f"root key {kid!r:.40} is not RSA")
            keys[str(kid)] = rsa_key(entry["n"], entry["e"])
        disabled_signing: set[bytes] = set()
        for entry in prot.get("disabledSigningKeys", []):
            if entry.get("alg") != "SHA256":
                raise ValueError("disabledSigningKeys: only SHA256 hashes are known")
            disabled_signing.add(b64url_decode(entry["hash"]))
        signatures = []
        for sig in data["signatures"]:
            if sig.get("alg") != "RS256":
                raise ValueError(f"signature alg {sig.get('alg')!r:.20} is not RS256")
            signatures.append(b64url_decode(sig["sig"]))
        return RootKeyPackage(
            version=int(prot.get("version", 0)),
            published=int(prot.get("published", 0)),
            is_test=bool(prot.get("isTest", False)),
            disabled_root_keys=frozenset(str(k) for k in prot.get("disabledRootKeys", [])),
            disabled_signing_keys=frozenset(disabled_signing),
            root_keys=MappingProxyType(keys),
            protected=prot,
            signatures=tuple(signatures),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RootKeyPackageError(
            f"root key package is malformed: {exc}", codes.ERC_ROOTKEY_PKG_FAIL_JSON_PARSE
        ) from exc


def _verify_package(pkg: RootKeyPackage, builtin: Mapping[str, RSAPublicKey]) -> None:
    """Each built-in key must sign ``protected`` at its index in the package's rootKeys."""
    order = list(pkg.root_keys)
    signed = protected_serialisations(pkg.protected)
    for kid, key in builtin.items():
        if kid not in order or order.index(kid) >= len(pkg.signatures):
            raise RootKeyPackageError(
                f"root key package has no signature by built-in root key {kid}",
                codes.ERC_ROOTKEY_SIGNATURE_FOR_KEY_NOT_FOUND,
            )
        sig = pkg.signatures[order.index(kid)]
        for data in signed:
            try:
                key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
                break
            except InvalidSignature:
                continue
        else:
            raise RootKeyPackageError(
                f"root key package signature by {kid} does not verify",
                codes.ERC_ROOTKEY_SIGNATURE_VALIDATION_FAILED,
            )


class RootKeyStore:
    """The trusted root keys, and what the newest verified root key package disabled."""

    def __init__(
        self,
        builtin: Mapping[str, RSAPublicKey],
        *,
        test: bool = False,
        package: RootKeyPackage | None = None,
    ) -> None:
        self.builtin = MappingProxyType(dict(builtin))
        self.test = test
        self.package = package

    @classmethod
    def production(cls) -> RootKeyStore:
        return cls(production_keys())

    @classmethod
    def with_test_keys(cls, path: Path) -> RootKeyStore:
        """Production keys plus the test root keys in ``path`` (configured explicitly)."""
        test = load_jwk_set(path.read_text(encoding="utf-8"), str(path))
        return cls({**production_keys(), **test}, test=True)

    def accept(self, raw: bytes | str) -> RootKeyStore:
        """A store that also applies the root key package ``raw``, once it verifies."""
        pkg = parse_package(raw)
        if pkg.is_test and not self.test:
            raise RootKeyPackageError(
                "a test root key package on an agent without test root keys",
                codes.ERC_ROOTKEY_TEST_PKG_ON_PROD_AGENT,
            )
        # Only the keys that built this store sign packages: production keys on a production
        # agent; on a test agent the test keys (a test package is signed by them alone).
        signers = {k: v for k, v in self.builtin.items() if k in pkg.root_keys or not self.test}
        if not signers:
            raise RootKeyPackageError(
                "root key package is signed by no built-in root key",
                codes.ERC_ROOTKEY_SIGNATURE_FOR_KEY_NOT_FOUND,
            )
        _verify_package(pkg, signers)
        return RootKeyStore(self.builtin, test=self.test, package=pkg)

    def key_for(self, kid: str) -> RSAPublicKey:
        """RootKeyUtility_GetKeyForKid: built-in or package key, unless the package disables it."""
        pkg = self.package
        if pkg is not None and kid in pkg.disabled_root_keys:
            raise RootKeyUnusable(
                JwsResult.DISALLOWED_ROOT_KID, f"root key {kid!r:.40} is disabled"
            )
        key = self.builtin.get(kid)
        if key is None and pkg is not None:
            key = pkg.root_keys.get(kid)
        if key is None:
            raise RootKeyUnusable(JwsResult.MISSING_ROOT_KID, f"no root key {kid!r:.40}")
        return key

    def signing_key_disabled(self, key: RSAPublicKey) -> bool:
        pkg = self.package
        return pkg is not None and not key_hashes(key).isdisjoint(pkg.disabled_signing_keys)


class TrustedRoots:
    """The root keys in force for every MCU: built-in keys plus the newest root key package.

    The reference agent keeps the last root key package it accepted in its local store
    and applies it to every later deployment (root_key_util.c, RootKeyUtility_GetKeyForKid
    loads the store), so a disabled key stays disabled even when a later deployment
    names no package. This one persists it beside the journal, and never goes back to a
    package of a lower ``version`` (a replayed old package would re-enable keys).
    """

    def __init__(self, base: RootKeyStore, path: Path | None = None) -> None:
        self.base = base
        self.path = path
        self.store = base
        if path is not None and path.is_file():
            try:
                self.store = base.accept(path.read_bytes())
            except (OSError, RootKeyPackageError):
                self.store = base  # unreadable: the next deployment's package replaces it

    def update(self, raw: bytes) -> RootKeyStore:
        """Apply the root key package ``raw`` (verified) and return the store in force."""
        candidate = self.base.accept(raw)
        new, current = candidate.package, self.store.package
        assert new is not None
        if current is not None and new.version < current.version:
            raise RootKeyPackageError(
                f"root key package version {new.version} is older than the one in force "
                f"({current.version})",
                codes.ERC_ROOTKEY_SIGNATURE_VALIDATION_FAILED,
            )
        if current is None or new.protected != current.protected:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_bytes(raw)
                tmp.replace(self.path)
            self.store = candidate
        return self.store

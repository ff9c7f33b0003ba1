"""ADU signature chain: Microsoft's real signed value, its tampered copy, hand-made failures."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.adu import codes
from gateway.adu.codes import JwsResult
from gateway.adu.errors import AduVerifyError, RootKeyPackageError
from gateway.adu.jws import b64url_decode
from gateway.adu.manifest import verify_service
from gateway.adu.rootkeys import RootKeyStore, production_keys
from simulators.hub.adu.signer import TestSigner, b64url, compact_jws
from tests.adu_fixtures import adu_fixture

# Microsoft's data, MIT licensed, kept in shared/adu (tests/adu_fixtures.py).
REAL = adu_fixture("signed-update-startupworkflow.json")
TAMPERED = adu_fixture("tampered-manifest-same-signature.json")

MANIFEST = json.dumps(
    {
        "manifestVersion": "5",
        "updateId": {"provider": "contoso", "name": "sensor-app", "version": "1.2.3"},
        "compatibility": [{"manufacturer": "contoso", "model": "vmcu-f4"}],
        "instructions": {
            "steps": [
                {
                    "handler": "mcu-gateway/package:1",
                    "files": ["f1"],
                    "handlerProperties": {"installedCriteria": "1.2.3"},
                }
            ]
        },
        "files": {
            "f1": {
                "fileName": "app.mcupkg",
                "sizeInBytes": 10,
                "hashes": {"sha256": base64.b64encode(b"\0" * 32).decode()},
            }
        },
        "createdDateTime": "2026-12-06T12:00:00Z",
    },
    separators=(",", ":"),
)


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="module")
def store(signer: TestSigner) -> RootKeyStore:
    from gateway.adu.jws import rsa_key

    keys = {k["kid"]: rsa_key(k["n"], k["e"]) for k in signer.root_jwks()["keys"]}
    return RootKeyStore(keys, test=True)


def service(signer: TestSigner, manifest: str = MANIFEST) -> dict[str, Any]:
    return {
        "workflow": {"action": 3, "id": "wf-1"},
        "updateManifest": manifest,
        "updateManifestSignature": signer.sign_manifest(manifest),
        "fileUrls": {"f1": "http://127.0.0.1/app.mcupkg"},
    }


def refused(value: object, store: RootKeyStore) -> AduVerifyError:
    with pytest.raises(AduVerifyError) as info:
        verify_service(value, store)
    return info.value


# ------------------------------------------------------------ Microsoft's own data


def test_microsoft_signed_value_verifies_with_production_root_keys() -> None:
    verified = verify_service(json.loads(REAL.read_text()), RootKeyStore.production())
    assert verified.chain.root_kid == "ADU.200702.R"
    assert verified.chain.signing_kid == "ADU.210609.R.S"
    assert verified.manifest.update_id.as_json() == (
        '{"provider":"Contoso","name":"Virtual-Vacuum","version":"20.0"}'
    )
    assert verified.workflow.action == codes.Action.PROCESS_DEPLOYMENT


def test_tampered_copy_is_refused_by_the_manifest_hash() -> None:
    err = refused(json.loads(TAMPERED.read_text()), RootKeyStore.production())
    assert err.erc == codes.ERC_MANIFEST_VALIDATION_FAILED
    assert "signed hash" in err.message


def test_built_in_production_keys_are_the_published_ones() -> None:
    published = json.loads((adu_fixture("adu-production-root-keys.json")).read_text())["keys"]
    built_in = production_keys()
    assert (
        sorted(built_in) == sorted(k["kid"] for k in published) == ["ADU.200702.R", "ADU.200703.R"]
    )
    for k in published:
        n = int.from_bytes(b64url_decode(k["n"]), "big")
        assert built_in[k["kid"]].public_numbers().n == n


def test_real_value_fails_without_the_production_root(
    signer: TestSigner, store: RootKeyStore
) -> None:
    err = refused(json.loads(REAL.read_text()), store)  # only the test root is trusted
    assert err.jws_result == JwsResult.MISSING_ROOT_KID
    assert err.erc == codes.make_erc(10, 2, 6)


# ------------------------------------------------------------ hand-made chains


def test_test_signer_chain_verifies(signer: TestSigner, store: RootKeyStore) -> None:
    verified = verify_service(service(signer), store)
    assert verified.manifest.files["f1"].size == 10
    assert verified.manifest.steps[0].installed_criteria == "1.2.3"


def test_test_root_is_not_trusted_by_a_production_store(signer: TestSigner) -> None:
    err = refused(service(signer), RootKeyStore.production())
    assert err.jws_result == JwsResult.MISSING_ROOT_KID


def test_wrong_kid_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    other = TestSigner(signer.root, signer.signing, root_kid="ADU.200703.R")
    err = refused(service(other), store)
    assert err.jws_result == JwsResult.MISSING_ROOT_KID


def test_sjwk_signed_by_another_key_under_the_trusted_kid(
    store: RootKeyStore, signer: TestSigner
) -> None:
    impostor = TestSigner(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), signer.signing
    )
    err = refused(service(impostor), store)
    assert err.jws_result == JwsResult.INVALID_SIGNATURE
    assert "sjwk" in err.message


def test_bad_alg_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    digest = base64.b64encode(__import__("hashlib").sha256(MANIFEST.encode()).digest()).decode()
    payload = json.dumps({"sha256": digest}).encode()
    token = compact_jws({"alg": "HS256", "sjwk": signer.sjwk()}, payload, signer.signing)
    value = service(signer) | {"updateManifestSignature": token}
    err = refused(value, store)
    assert err.jws_result == JwsResult.INVALID_SIGNATURE
    assert "HS256" in err.message


def test_alg_none_with_empty_signature_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    good = signer.sign_manifest(MANIFEST)
    head, body, _ = good.split(".")
    header = json.loads(b64url_decode(head)) | {"alg": "none"}
    token = f"{b64url(json.dumps(header).encode())}.{body}."
    err = refused(service(signer) | {"updateManifestSignature": token}, store)
    assert err.jws_result == JwsResult.INVALID_SIGNATURE


def test_bad_manifest_hash_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    value = service(signer)
    value["updateManifest"] = MANIFEST.replace("1.2.3", "9.9.9")
    err = refused(value, store)
    assert err.erc == codes.ERC_MANIFEST_VALIDATION_FAILED


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", 42, None],
)
def test_malformed_signature_is_refused(
    token: object, signer: TestSigner, store: RootKeyStore
) -> None:
    err = refused(service(signer) | {"updateManifestSignature": token}, store)
    assert err.jws_result in (JwsResult.BAD_STRUCTURE, JwsResult.INVALID_ENCODING_JWS_HEADER)


def test_signature_without_sjwk_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    token = compact_jws({"alg": "RS256"}, b"{}", signer.signing)
    err = refused(service(signer) | {"updateManifestSignature": token}, store)
    assert err.jws_result == JwsResult.BAD_STRUCTURE


# ------------------------------------------------------------ root key packages


def test_disabled_root_key(signer: TestSigner, store: RootKeyStore) -> None:
    pkg = signer.root_key_package(disabled_root_keys=[signer.root_kid])
    err = refused(service(signer), store.accept(json.dumps(pkg)))
    assert err.jws_result == JwsResult.DISALLOWED_ROOT_KID


def test_disabled_signing_key(signer: TestSigner, store: RootKeyStore) -> None:
    pkg = signer.root_key_package(disabled_signing_keys=[signer.signing_key_hash()])
    err = refused(service(signer), store.accept(json.dumps(pkg)))
    assert err.jws_result == JwsResult.DISALLOWED_SIGNING_KEY
    assert err.erc == codes.ERC_ROOTKEY_SIGNING_KEY_IS_DISABLED


def test_package_disabling_another_key_leaves_this_one(
    signer: TestSigner, store: RootKeyStore
) -> None:
    pkg = signer.root_key_package(
        disabled_root_keys=["ADU.200702.R"], disabled_signing_keys=[b64url(b"\1" * 32)]
    )
    verify_service(service(signer), store.accept(json.dumps(pkg)))


def test_unsigned_or_forged_package_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkg = signer.root_key_package(disabled_root_keys=[signer.root_kid], signers=[forger])
    with pytest.raises(RootKeyPackageError) as info:
        store.accept(json.dumps(pkg))
    assert info.value.erc == codes.ERC_ROOTKEY_SIGNATURE_VALIDATION_FAILED
    altered = signer.root_key_package()
    altered["protected"]["disabledRootKeys"] = [signer.root_kid]  # after signing
    with pytest.raises(RootKeyPackageError):
        store.accept(json.dumps(altered))


def test_test_package_refused_on_production_agent(signer: TestSigner) -> None:
    with pytest.raises(RootKeyPackageError) as info:
        RootKeyStore.production().accept(json.dumps(signer.root_key_package()))
    assert info.value.erc == codes.ERC_ROOTKEY_TEST_PKG_ON_PROD_AGENT


def test_production_package_must_be_signed_by_every_production_key(signer: TestSigner) -> None:
    pkg = copy.deepcopy(signer.root_key_package(is_test=False))
    with pytest.raises(RootKeyPackageError) as info:
        RootKeyStore.production().accept(json.dumps(pkg))
    assert info.value.erc == codes.ERC_ROOTKEY_SIGNATURE_FOR_KEY_NOT_FOUND


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{}",
        "[]",
        '{"protected": 1, "signatures": []}',
        '{"protected": {"rootKeys": {"k": {"keyType": "EC"}}}, "signatures": []}',
    ],
)
def test_malformed_package_is_refused(raw: str, store: RootKeyStore) -> None:
    with pytest.raises(RootKeyPackageError):
        store.accept(raw)


def test_root_key_package_in_force_persists(
    tmp_path: Path, signer: TestSigner, store: RootKeyStore
) -> None:
    from gateway.adu.rootkeys import TrustedRoots

    path = tmp_path / "adu" / "rootkeypackage.json"
    roots = TrustedRoots(store, path)
    pkg = signer.root_key_package(disabled_signing_keys=[signer.signing_key_hash()], version=2)
    roots.update(json.dumps(pkg).encode())
    # A later value naming no package is still checked against the one in force, also
    # after a restart.
    for held in (roots, TrustedRoots(store, path)):
        err = refused(service(signer), held.store)
        assert err.jws_result == JwsResult.DISALLOWED_SIGNING_KEY


def test_an_older_root_key_package_is_refused(signer: TestSigner, store: RootKeyStore) -> None:
    from gateway.adu.rootkeys import TrustedRoots

    roots = TrustedRoots(store)
    newer = signer.root_key_package(disabled_signing_keys=[signer.signing_key_hash()], version=3)
    roots.update(json.dumps(newer).encode())
    older = signer.root_key_package(version=2)  # would re-enable the signing key
    with pytest.raises(RootKeyPackageError):
        roots.update(json.dumps(older).encode())
    assert roots.store.package is not None
    assert roots.store.package.version == 3

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from firmware import keys
from firmware.compat import TargetInfo
from firmware.keys import Algorithm, PrivateKey, PublicKey
from firmware.package import HEADER_LEN, build, manifest_for, parse
from firmware.policy import TrustPolicy, Verdict, check_package, evaluate
from firmware.reasons import ReasonCode
from firmware.twin import DesiredFirmware
from tests.firmware.conftest import COMPAT, make_manifest

TARGET = TargetInfo(compat=COMPAT, model="vmcu-f4", installed_version="1.0.0")


def _desired(data: bytes, **kw: object) -> DesiredFirmware:
    base = DesiredFirmware(
        fwVersion="1.2.3",
        fwPackageURI="https://example.invalid/p.fwpkg",
        fwPackageCheckValue=hashlib.sha256(data).hexdigest(),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _eval(data: bytes, policy: TrustPolicy, target: TargetInfo = TARGET, **kw: object) -> Verdict:
    return evaluate(data, desired=_desired(data, **kw), target=target, policy=policy)


@pytest.fixture
def policy(anchor: PublicKey) -> TrustPolicy:
    return TrustPolicy(trusted_keys=(anchor,))


def _refused(verdict: Verdict, reason: ReasonCode, *words: str) -> None:
    assert not verdict.ok
    assert verdict.package is None
    assert verdict.reason is reason, verdict
    for word in words:
        assert word in verdict.message, verdict.message


def test_accepts_a_good_package(signed: bytes, policy: TrustPolicy, payload: bytes) -> None:
    verdict = _eval(signed, policy)
    assert verdict.ok, verdict
    assert verdict.reason is ReasonCode.OK
    assert verdict.package is not None
    assert verdict.package.payload == payload


def test_flipped_payload_bit(signed: bytes, policy: TrustPolicy) -> None:
    at = HEADER_LEN + len(parse(signed).manifest_bytes) + 7
    bad = bytearray(signed)
    bad[at] ^= 0x10
    _refused(_eval(bytes(bad), policy), ReasonCode.PAYLOAD_HASH_MISMATCH, "payload")


def test_flipped_manifest_bit(signed: bytes, policy: TrustPolicy) -> None:
    bad = bytearray(signed)
    bad[signed.index(b'"sensor-app"') + 1] ^= 0x20  # 's' -> 'S'
    _refused(_eval(bytes(bad), policy), ReasonCode.SIGNATURE_INVALID, "manifest")


def test_untrusted_key(payload: bytes, policy: TrustPolicy) -> None:
    data = build(make_manifest(payload), payload, keys.generate(Algorithm.ED25519))
    _refused(_eval(data, policy), ReasonCode.UNTRUSTED_KEY, "trusted")


def test_unsigned_under_default_policy(payload: bytes, policy: TrustPolicy) -> None:
    data = build(make_manifest(payload), payload)
    _refused(_eval(data, policy), ReasonCode.UNSIGNED, "unsigned")
    assert _eval(data, replace(policy, allow_unsigned=True)).ok


def test_truncated(signed: bytes, policy: TrustPolicy) -> None:
    _refused(_eval(signed[:-10], policy), ReasonCode.TRUNCATED, "bytes")


def test_wrong_check_value(signed: bytes, policy: TrustPolicy) -> None:
    _refused(
        _eval(signed, policy, fwPackageCheckValue="0" * 64),
        ReasonCode.CHECK_VALUE_MISMATCH,
        "fwPackageCheckValue",
    )


def test_wrong_model(payload: bytes, signing_key: PrivateKey, policy: TrustPolicy) -> None:
    data = build(make_manifest(payload, model="vmcu-l0"), payload, signing_key)
    _refused(_eval(data, policy), ReasonCode.INCOMPATIBLE_MODEL, "vmcu-l0", "vmcu-f4")


def test_wrong_manufacturer_and_hwrev(
    payload: bytes, signing_key: PrivateKey, policy: TrustPolicy
) -> None:
    other = build(make_manifest(payload, manufacturer="fabrikam"), payload, signing_key)
    _refused(_eval(other, policy), ReasonCode.INCOMPATIBLE_MANUFACTURER, "fabrikam")
    rev_c = build(make_manifest(payload, hwrev="C"), payload, signing_key)
    _refused(_eval(rev_c, policy), ReasonCode.INCOMPATIBLE_HWREV, "'C'")
    rev_b = build(make_manifest(payload, hwrev="B"), payload, signing_key)
    assert _eval(rev_b, policy).ok


def test_malformed_target(signed: bytes, policy: TrustPolicy) -> None:
    _refused(
        _eval(signed, policy, target=replace(TARGET, compat="contoso-vmcu")),
        ReasonCode.TARGET_INVALID,
        "contoso-vmcu",
    )


def test_downgrade(signed: bytes, policy: TrustPolicy) -> None:
    newer = replace(TARGET, installed_version="2.0.0")
    _refused(_eval(signed, policy, target=newer), ReasonCode.DOWNGRADE, "2.0.0", "1.2.3")
    assert _eval(signed, policy, target=newer, allowDowngrade=True).ok


def test_below_minimum_version(
    payload: bytes, signing_key: PrivateKey, policy: TrustPolicy
) -> None:
    data = build(make_manifest(payload, min_installed_version="1.1.0"), payload, signing_key)
    _refused(_eval(data, policy), ReasonCode.BELOW_MINIMUM_VERSION, "1.0.0", "1.1.0")
    _refused(
        _eval(data, policy, target=replace(TARGET, installed_version=None)),
        ReasonCode.BELOW_MINIMUM_VERSION,
        "unknown",
    )
    assert _eval(data, policy, target=replace(TARGET, installed_version="1.1.0")).ok


def test_oversize_payload(signed: bytes, policy: TrustPolicy) -> None:
    _refused(_eval(signed, replace(policy, max_size=2000)), ReasonCode.TOO_LARGE, "cap")
    _refused(
        _eval(signed, policy, target=replace(TARGET, slot_size=1024)), ReasonCode.TOO_LARGE, "slot"
    )


def test_version_mismatch_and_size_mismatch(signed: bytes, policy: TrustPolicy) -> None:
    _refused(_eval(signed, policy, fwVersion="1.2.4"), ReasonCode.VERSION_MISMATCH, "1.2.4")
    _refused(_eval(signed, policy, fwPackageSize=len(signed) + 1), ReasonCode.SIZE_MISMATCH)


def test_check_package_for_flash(signed: bytes, policy: TrustPolicy) -> None:
    assert check_package(signed, target=TARGET, policy=policy).ok
    wrong = replace(TARGET, compat="contoso:vmcu-l0:", model="vmcu-l0")
    _refused(check_package(signed, target=wrong, policy=policy), ReasonCode.INCOMPATIBLE_MODEL)


def test_delta_package_only_for_its_base_and_never_as_a_full_image(
    payload: bytes, signing_key: PrivateKey, policy: TrustPolicy
) -> None:
    base_sha = hashlib.sha256(b"old image").hexdigest()
    m = manifest_for(payload, provider="contoso", name="sensor-app", version="1.2.3",
                     manufacturer="contoso", model="vmcu-f4", delta_base="1.0.0",
                     delta_base_sha256=base_sha, delta_target=b"\x5a" * 5000)  # fmt: skip
    data = build(m, payload, signing_key)
    # A path that writes payloads as images (flash, a driver without deltas): refused.
    _refused(_eval(data, policy), ReasonCode.DELTA_UNSUPPORTED, "1.0.0")
    _refused(check_package(data, target=TARGET, policy=policy), ReasonCode.DELTA_UNSUPPORTED)

    def for_base(sha: str | None) -> Verdict:
        target = replace(TARGET, delta_base_sha256=sha, slot_size=8000)
        desired = _desired(data)
        return evaluate(data, desired=desired, target=target, policy=policy, allow_delta=True)

    assert for_base(base_sha).ok
    _refused(for_base("cd" * 32), ReasonCode.DELTA_BASE_MISMATCH, "1.0.0", "cdcdcd")
    _refused(for_base(None), ReasonCode.DELTA_BASE_MISMATCH, "unknown")
    # The slot must hold the image the delta makes, not just the patch.
    small = replace(TARGET, delta_base_sha256=base_sha, slot_size=4000)
    verdict = evaluate(data, desired=_desired(data), target=small, policy=policy, allow_delta=True)
    _refused(verdict, ReasonCode.TOO_LARGE, "5000")


def test_a_delta_manifest_names_base_and_target_together(payload: bytes) -> None:
    with pytest.raises(ValueError, match="together"):
        make_manifest(payload, delta_base="1.0.0")

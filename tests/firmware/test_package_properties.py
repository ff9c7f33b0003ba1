"""Random packages round-trip; every single-byte corruption anywhere is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import keys
from firmware.errors import FirmwareError
from firmware.keys import Algorithm, PublicKey
from firmware.package import build, verify
from tests.firmware.conftest import make_manifest

_KEYS = {alg: keys.generate(alg) for alg in (Algorithm.ED25519, Algorithm.ECDSA_P256_SHA256)}
_ANCHORS = [PublicKey.from_key(k.public_key()) for k in _KEYS.values()]

_name = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=12,
)
_version = st.builds("{}.{}.{}".format, st.integers(0, 99), st.integers(0, 99), st.integers(0, 99))


@st.composite
def packages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    payload = draw(st.binary(max_size=2048))
    manifest = make_manifest(
        payload,
        provider=draw(st.text(min_size=1, max_size=10).filter(str.isprintable)),
        name=draw(_name),
        version=draw(_version),
        manufacturer=draw(_name),
        model=draw(_name),
        hwrev=draw(st.none() | _name),
        min_installed_version=draw(st.none() | _version),
    )
    alg = draw(st.sampled_from([None, *_KEYS]))
    return build(manifest, payload, None if alg is None else _KEYS[alg]), payload


@settings(max_examples=150, deadline=None)
@given(packages())
def test_random_packages_round_trip(pkg: tuple[bytes, bytes]) -> None:
    data, payload = pkg
    assert verify(data, _ANCHORS, allow_unsigned=True).payload == payload


@settings(max_examples=400, deadline=None)
@given(packages(), st.data())
def test_any_single_byte_corruption_is_caught(
    pkg: tuple[bytes, bytes], data: st.DataObject
) -> None:
    raw, _ = pkg
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    xor = data.draw(st.integers(1, 255), label="xor")
    corrupt = bytearray(raw)
    corrupt[index] ^= xor
    with pytest.raises(FirmwareError):
        verify(bytes(corrupt), _ANCHORS, allow_unsigned=True)


@settings(max_examples=100, deadline=None)
@given(packages(), st.data())
def test_any_truncation_is_caught(pkg: tuple[bytes, bytes], data: st.DataObject) -> None:
    raw, _ = pkg
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(FirmwareError):
        verify(raw[:cut], _ANCHORS, allow_unsigned=True)

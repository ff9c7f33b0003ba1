from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware import keys
from firmware.keys import Algorithm, PrivateKey, PublicKey
from firmware.manifest import Manifest
from firmware.package import build, manifest_for
from simulators.image_server import ImageServer
from simulators.image_tls import LoopbackPki, make_test_pki
from tests.net import addr

COMPAT = "contoso:vmcu-f4:B"
FIRMWARE_HOST = addr(3, 1)  # loopback address of its own, so parallel suites never collide


def make_manifest(payload: bytes, **overrides: str | None) -> Manifest:
    fields: dict[str, str | None] = {
        "provider": "contoso",
        "name": "sensor-app",
        "version": "1.2.3",
        "manufacturer": "contoso",
        "model": "vmcu-f4",
        "hwrev": None,
        "min_installed_version": None,
    }
    fields.update(overrides)
    return manifest_for(payload, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=[Algorithm.ED25519, Algorithm.ECDSA_P256_SHA256], ids=lambda a: a.label)
def signing_key(request: pytest.FixtureRequest) -> PrivateKey:
    alg: Algorithm = request.param
    return keys.generate(alg)


@pytest.fixture
def anchor(signing_key: PrivateKey) -> PublicKey:
    return PublicKey.from_key(signing_key.public_key())


@pytest.fixture
def payload() -> bytes:
    return os.urandom(3000)


@pytest.fixture
def signed(payload: bytes, signing_key: PrivateKey) -> bytes:
    return build(make_manifest(payload), payload, signing_key)


@pytest.fixture(scope="session")
def pki_firmware() -> LoopbackPki:
    return make_test_pki(FIRMWARE_HOST)


@pytest.fixture
async def image_server(pki_firmware: LoopbackPki) -> AsyncIterator[ImageServer]:
    async with ImageServer(
        FIRMWARE_HOST, ssl_context=pki_firmware.server_context(), chunk_size=8 * 1024
    ) as server:
        yield server


@pytest.fixture
def ca_file(tmp_path: Path, pki_firmware: LoopbackPki) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(pki_firmware.ca_pem)
    return path

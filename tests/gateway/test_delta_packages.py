"""Published delta packages: `image delta` makes them, the gateway applies them only to
MCUs running their base, and falls back to fwFullPackage otherwise (docs/package.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from firmware import keys
from firmware.package import parse, verify
from firmware.policy import TrustPolicy
from firmware.twin import parse_desired
from gateway.cli import main
from gateway.config import PolicySettings
from gateway.journal import Journal, Outcome
from gateway.logs import mcu_logger
from gateway.update import UpdateEnv, UpdateFailed, UpdateRun
from protocols.driver import Capability
from tests.gateway.fakes import MODEL, FakeDownloader, FakeMcu

UID = "0a1b2c3d"


def _code_like(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(500)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


OLD = _code_like(1, 32 * 1024)
NEW = OLD[:7000] + b"a small code change" + OLD[7000:]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["image", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(json.loads(out))


@pytest.fixture
def packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    _cli(capsys, "keygen", "--out", str(tmp_path / "rel"))
    paths = {}
    for version, image in (("1.0.0", OLD), ("1.1.0", NEW)):
        (tmp_path / f"{version}.bin").write_bytes(image)
        paths[version] = tmp_path / f"{version}.mcufw"
        _cli(capsys, "pack", str(tmp_path / f"{version}.bin"), "-o", str(paths[version]),
             "--version", version, "--provider", "contoso", "--name", "app",
             "--manufacturer", "contoso", "--model", MODEL,
             "--key", str(tmp_path / "rel.key"))  # fmt: skip
    paths["delta"] = tmp_path / "1.0.0-1.1.0.mcufw"
    return paths


def test_image_delta_makes_a_signed_patch_naming_its_base(
    tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _cli(capsys, "delta", "--from", str(packages["1.0.0"]), "--to",
               str(packages["1.1.0"]), "-o", str(packages["delta"]),
               "--key", str(tmp_path / "rel.key"))  # fmt: skip
    assert out["signed"] and out["base"]["version"] == "1.0.0"
    assert out["patch_bytes"] < 0.05 * len(NEW)
    anchor = keys.load_public_key(tmp_path / "rel.pub")
    pkg = verify(packages["delta"].read_bytes(), (anchor,))
    m = pkg.manifest
    assert m.is_delta and m.delta_base == "1.0.0"
    assert m.delta_base_sha256 == hashlib.sha256(OLD).hexdigest()
    assert (m.delta_target_size, m.delta_target_sha256) == (
        len(NEW),
        hashlib.sha256(NEW).hexdigest(),
    )
    assert m.update.version == "1.1.0"
    # A delta of a delta makes no sense: refused with a clear message.
    code = main(["image", "delta", "--from", str(packages["delta"]), "--to",
                 str(packages["1.1.0"]), "-o", str(tmp_path / "x.mcufw"),
                 "--pubkey", str(tmp_path / "rel.pub")])  # fmt: skip
    assert code != 0 and "itself a delta" in capsys.readouterr().err


def _env(journal: Journal, downloader: FakeDownloader, anchor: Any) -> UpdateEnv:
    return UpdateEnv(journal=journal, downloader=downloader,  # type: ignore[arg-type]
                     trust=TrustPolicy((anchor,)), policy=PolicySettings(),
                     flash_slots=asyncio.Semaphore(1), confirm_timeout_s=5.0)  # fmt: skip


def _desired(downloader: FakeDownloader, paths: dict[str, Path], *, full: bool) -> Any:
    blobs = {name: paths[name].read_bytes() for name in ("delta", "1.1.0")}
    for name, blob in blobs.items():
        downloader.packages[f"https://cdn.example/{name}"] = blob
    desired: dict[str, Any] = {
        "fwVersion": "1.1.0",
        "fwPackageURI": "https://cdn.example/delta",
        "fwPackageCheckValue": hashlib.sha256(blobs["delta"]).hexdigest(),
    }
    if full:
        desired["fwFullPackage"] = {
            "fwPackageURI": "https://cdn.example/1.1.0",
            "fwPackageCheckValue": hashlib.sha256(blobs["1.1.0"]).hexdigest(),
            "fwPackageSize": len(blobs["1.1.0"]),
        }
    return parse_desired(desired)


class _DeltaMcu(FakeMcu):
    def __init__(self, base: bytes) -> None:
        super().__init__("1.0.0")
        self.set_slot(0, "1.0.0", len(base))
        import dataclasses

        self.slots[0] = dataclasses.replace(self.slots[0], sha256=hashlib.sha256(base).hexdigest())
        self.images: list[Any] = []

    def facts(self) -> Any:
        import dataclasses

        f = super().facts()
        return dataclasses.replace(f, capabilities=f.capabilities | {Capability.DELTA})


async def _update(tmp_path: Path, mcu: FakeMcu, downloader: FakeDownloader, desired: Any) -> Any:
    anchor = keys.load_public_key(tmp_path / "rel.pub")
    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu(UID, device_id="mcu-1", model=MODEL, port="p")
        run = UpdateRun(_env(journal, downloader, anchor), uid=UID, desired=desired,
                        facts=mcu.facts(), driver=mcu.open, report=_ignore,
                        log=mcu_logger("test", "mcu-1"))  # fmt: skip
        return await run.run()


async def _ignore(patch: dict[str, Any], transition: bool) -> None:
    return None


@pytest.fixture
def delta_pkg(
    tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> dict[str, Path]:
    _cli(capsys, "delta", "--from", str(packages["1.0.0"]), "--to", str(packages["1.1.0"]),
         "-o", str(packages["delta"]), "--key", str(tmp_path / "rel.key"))  # fmt: skip
    return packages


async def test_a_delta_for_the_running_image_goes_to_the_driver_as_a_delta(
    tmp_path: Path, delta_pkg: dict[str, Path]
) -> None:
    mcu, downloader = _DeltaMcu(OLD), FakeDownloader(tmp_path)
    desired = _desired(downloader, delta_pkg, full=True)
    result = await _update(tmp_path, mcu, downloader, desired)
    assert result.outcome is Outcome.CURRENT
    assert downloader.fetches == ["https://cdn.example/delta"]  # the full one was not needed
    assert mcu.slots[1].sha256 == hashlib.sha256(NEW).hexdigest()
    assert mcu.slots[1].size == len(NEW)


async def test_a_delta_for_another_base_falls_back_to_the_full_package(
    tmp_path: Path, delta_pkg: dict[str, Path]
) -> None:
    mcu, downloader = _DeltaMcu(b"some other image"), FakeDownloader(tmp_path)
    desired = _desired(downloader, delta_pkg, full=True)
    result = await _update(tmp_path, mcu, downloader, desired)
    assert result.outcome is Outcome.CURRENT
    assert downloader.fetches == ["https://cdn.example/delta", "https://cdn.example/1.1.0"]
    assert mcu.slots[1].sha256 == hashlib.sha256(NEW).hexdigest()


async def test_without_a_full_package_the_mismatch_is_the_twin_error(
    tmp_path: Path, delta_pkg: dict[str, Path]
) -> None:
    mcu, downloader = _DeltaMcu(b"some other image"), FakeDownloader(tmp_path)
    desired = _desired(downloader, delta_pkg, full=False)
    with pytest.raises(UpdateFailed) as exc:
        await _update(tmp_path, mcu, downloader, desired)
    assert exc.value.code == "DELTA_BASE_MISMATCH" and exc.value.phase == "verifying"
    assert "1.0.0" in exc.value.message
    assert mcu.flashed == []  # nothing was written


async def test_a_driver_without_deltas_gets_the_full_package(
    tmp_path: Path, delta_pkg: dict[str, Path]
) -> None:
    mcu, downloader = FakeMcu(), FakeDownloader(tmp_path)  # no DELTA capability
    desired = _desired(downloader, delta_pkg, full=True)
    assert (await _update(tmp_path, mcu, downloader, desired)).outcome is Outcome.CURRENT
    assert downloader.fetches[-1] == "https://cdn.example/1.1.0"
    assert len(parse(delta_pkg["delta"].read_bytes()).payload) < len(NEW)


def test_image_verify_checks_a_delta_against_the_mcus_base(
    tmp_path: Path, delta_pkg: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["image", "verify", str(delta_pkg["delta"]), "--pubkey", str(tmp_path / "rel.pub"),
              "--compat", f"contoso:{MODEL}:"]  # fmt: skip
    assert main([*common, "--base-sha256", hashlib.sha256(OLD).hexdigest()]) == 0
    capsys.readouterr()
    assert main([*common, "--base-sha256", hashlib.sha256(NEW).hexdigest()]) != 0
    assert "DELTA_BASE_MISMATCH" in capsys.readouterr().err
    assert main(common) != 0  # as `flash` would: a delta is no full image
    assert "DELTA_UNSUPPORTED" in capsys.readouterr().err

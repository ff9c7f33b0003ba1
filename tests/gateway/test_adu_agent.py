"""The ADU agent contract per MCU, against the in-memory fakes of the two seams."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware import keys
from firmware.policy import TrustPolicy
from gateway.adu import codes
from gateway.adu.agent import HANDLER, AduContext, AduMcuAgent
from gateway.adu.contract import CONTRACT_MODEL_ID
from gateway.adu.jws import rsa_key
from gateway.adu.rootkeys import RootKeyStore, TrustedRoots
from gateway.adu.settings import AduSettings
from gateway.adu.state import AduStateStore
from gateway.config import PolicySettings
from gateway.journal import Journal
from gateway.update import UpdateEnv
from protocols.driver import (
    DriverError,
    Image,
    InstallResult,
    Outcome,
    ProgressFn,
    Step,
    no_progress,
)
from simulators.hub.adu.signer import TestSigner
from tests.gateway.fakes import (
    MODEL,
    FakeDownloader,
    FakeDriver,
    FakeLink,
    FakeMcu,
    Release,
    release,
)

UPDATE_NAME = "sensor-app"


class AduLink(FakeLink):
    """A FakeLink whose desired document can carry ``deviceUpdate.service``."""

    def set_service(self, value: dict[str, Any]) -> None:
        self._version += 1
        self._desired = {**self._desired, "deviceUpdate": {"__t": "c", "service": value}}
        self._patches.put_nowait({"deviceUpdate": {"service": value}, "$version": self._version})

    @property
    def agent(self) -> dict[str, Any]:
        return self.state.get("deviceUpdate", {}).get("agent", {})

    @property
    def service_ack(self) -> dict[str, Any]:
        return self.state.get("deviceUpdate", {}).get("service", {})


def update_manifest(rel: Release, *, model: str = MODEL, handler: str = HANDLER) -> str:
    return json.dumps(
        {
            "manifestVersion": "5",
            "updateId": {"provider": "contoso", "name": UPDATE_NAME, "version": rel.version},
            "compatibility": [{"manufacturer": "contoso", "model": model}],
            "instructions": {
                "steps": [
                    {
                        "handler": handler,
                        "files": ["f0"],
                        "handlerProperties": {"installedCriteria": rel.version},
                    }
                ]
            },
            "files": {
                "f0": {
                    "fileName": f"{rel.version}.mcufw",
                    "sizeInBytes": len(rel.blob),
                    "hashes": {
                        "sha256": base64.b64encode(hashlib.sha256(rel.blob).digest()).decode()
                    },
                }
            },
            "createdDateTime": "2026-12-06T12:00:00Z",
        },
        separators=(",", ":"),
    )


@dataclass
class Rig:
    agent: AduMcuAgent
    link: AduLink
    mcu: FakeMcu
    downloader: FakeDownloader
    key: Any
    signer: TestSigner

    def release(self, version: str) -> Release:
        return release(self.downloader, self.key, version)

    def service(
        self,
        rel: Release,
        wid: str = "wf-1",
        *,
        manifest: str | None = None,
        action: int = 3,
        retry: str | None = None,
    ) -> dict[str, Any]:
        text = manifest or update_manifest(rel)
        workflow: dict[str, Any] = {"action": action, "id": wid}
        if retry is not None:
            workflow["retryTimestamp"] = retry
        return {
            "workflow": workflow,
            "updateManifest": text,
            "updateManifestSignature": self.signer.sign_manifest(text),
            "fileUrls": {"f0": rel.url},
        }

    async def wait_agent(self, within: float = 10.0, **fields: Any) -> dict[str, Any]:
        def matches(link: FakeLink) -> bool:
            agent = self.link.agent
            return all(agent.get(k) == v for k, v in fields.items())

        await self.link.wait_for(matches, within)
        return self.link.agent


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    signer: TestSigner,
    *,
    mcu: FakeMcu | None = None,
    link: AduLink | None = None,
    provider: str | None = "contoso",
    key: Any = None,
    store: RootKeyStore | None = None,
) -> AsyncIterator[Rig]:
    mcu = mcu or FakeMcu()
    link = link or AduLink()
    key = key or keys.generate(keys.Algorithm.ED25519)
    downloader = FakeDownloader(tmp_path)
    journal = Journal.open(tmp_path / "state")
    env = UpdateEnv(
        journal=journal,
        downloader=downloader,  # type: ignore[arg-type]
        trust=TrustPolicy((keys.PublicKey.from_key(key.public_key()),)),
        policy=PolicySettings(),
        flash_slots=asyncio.Semaphore(2),
        confirm_timeout_s=5.0,
    )
    roots = {k["kid"]: rsa_key(k["n"], k["e"]) for k in signer.root_jwks()["keys"]}
    adu = AduContext(
        settings=AduSettings(models=(MODEL,), provider=provider, names={MODEL: UPDATE_NAME}),
        root_keys=TrustedRoots(store or RootKeyStore(roots, test=True)),
        state=AduStateStore(tmp_path / "state" / "adu"),
    )
    agent = AduMcuAgent(
        adu=adu,
        env=env,
        probe=mcu.probe(),
        device_id=link.device_id,
        gateway_id="gw",
        link=link,
        allowed_schemes=("https",),
        open_driver=mcu.open,
        rng=random.Random(7),
    )
    await agent.start()
    try:
        yield Rig(agent, link, mcu, downloader, key, signer)
    finally:
        await agent.close()
        journal.close()


def update_id(version: str) -> str:
    return json.dumps(
        {"provider": "contoso", "name": UPDATE_NAME, "version": version}, separators=(",", ":")
    )


async def test_start_reports_the_contract_and_the_factory_image(
    tmp_path: Path, signer: TestSigner
) -> None:
    async with rig(tmp_path, signer) as r:
        agent = await r.wait_agent(state=0)
        assert agent["deviceProperties"]["manufacturer"] == "contoso"
        assert agent["deviceProperties"]["model"] == MODEL
        assert agent["deviceProperties"]["contractModelId"] == CONTRACT_MODEL_ID
        assert agent["compatPropertyNames"] == "manufacturer,model"
        assert agent["installedUpdateId"] == update_id("1.0.0")
        assert r.link.state["deviceUpdate"]["__t"] == "c"
        assert r.link.firmware["currentFwVersion"] == "1.0.0"


async def test_no_installed_update_id_without_a_provider(
    tmp_path: Path, signer: TestSigner
) -> None:
    async with rig(tmp_path, signer, provider=None) as r:
        agent = await r.wait_agent(state=0)
        assert "installedUpdateId" not in agent


async def test_deployment_installs_and_reports_success(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        await r.wait_agent(state=0)
        rel = r.release("1.1.0")
        r.link.set_service(r.service(rel))
        await r.wait_agent(state=6)
        agent = await r.wait_agent(state=0, installedUpdateId=update_id("1.1.0"))
        assert agent["workflow"] == {"action": 3, "id": "wf-1"}
        result = agent["lastInstallResult"]
        assert result["resultCode"] == 700
        assert result["extendedResultCodes"] == "00000000"
        assert result["stepResults"]["step_0"]["resultCode"] == 700
        assert r.mcu.version == "1.1.0"
        assert r.link.firmware["fwUpdateStatus"] == "current"
        assert r.link.firmware["currentFwVersion"] == "1.1.0"
        ack = r.link.service_ack
        assert ack["ac"] == 200
        assert ack["av"] == 2
        # Sent as null, which deletes them from the reported twin: the echo stays small.
        assert "updateManifestSignature" not in ack["value"]
        assert "fileUrls" not in ack["value"]
        assert ack["value"]["workflow"] == {"action": 3, "id": "wf-1"}
        # The twin's own firmware section never asked for anything.
        assert "firmware" not in r.link.desired


async def test_tampered_manifest_fails_without_touching_the_mcu(
    tmp_path: Path, signer: TestSigner
) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        value = r.service(rel)
        value["updateManifest"] = value["updateManifest"].replace('"1.1.0"', '"1.1.1"', 1)
        r.link.set_service(value)
        agent = await r.wait_agent(state=255)
        assert agent["lastInstallResult"]["extendedResultCodes"] == "80300001"
        assert agent["lastInstallResult"]["resultCode"] == 0
        assert r.mcu.flashed == []
        assert r.downloader.fetches == []


async def test_untrusted_signer_fails(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        value = r.service(rel)
        value["updateManifestSignature"] = TestSigner().sign_manifest(value["updateManifest"])
        r.link.set_service(value)
        agent = await r.wait_agent(state=255)
        erc = codes.make_erc(10, 2, int(codes.JwsResult.INVALID_SIGNATURE))
        assert agent["lastInstallResult"]["extendedResultCodes"] == codes.erc_hex(erc)
        assert r.mcu.flashed == []


async def test_incompatible_model_fails(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        r.link.set_service(r.service(rel, manifest=update_manifest(rel, model="other-mcu")))
        agent = await r.wait_agent(state=255)
        assert agent["lastInstallResult"]["extendedResultCodes"] == "30400007"
        assert "other-mcu" in agent["lastInstallResult"]["resultDetails"]
        assert r.mcu.flashed == []


async def test_other_handler_fails(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        r.link.set_service(r.service(rel, manifest=update_manifest(rel, handler="microsoft/apt:1")))
        agent = await r.wait_agent(state=255)
        assert agent["lastInstallResult"]["extendedResultCodes"] == "30000003"


async def test_package_signed_by_an_unknown_key_fails(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        rogue = release(r.downloader, keys.generate(keys.Algorithm.ED25519), "1.1.0")
        r.link.set_service(r.service(rogue))
        agent = await r.wait_agent(state=255)
        result = agent["lastInstallResult"]
        assert result["resultDetails"].startswith("UNTRUSTED_KEY")
        assert result["extendedResultCodes"] == codes.erc_hex(codes.erc_for("UNTRUSTED_KEY"))
        assert r.mcu.flashed == []
        assert r.link.firmware["error"]["code"] == "UNTRUSTED_KEY"


async def test_failing_mcu_then_retry(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        r.mcu.failures.append(DriverError("MCU_FLASH_ERROR", "flash write failed", Step.WRITE))
        r.link.set_service(r.service(rel))
        agent = await r.wait_agent(state=255)
        result = agent["lastInstallResult"]
        assert result["resultDetails"].startswith("MCU_FLASH_ERROR: flash write failed")
        # MCU_FLASH_ERROR is a device failure: the ERC says so (facility 3, ours, Kind.DEVICE).
        assert result["extendedResultCodes"] == "3FE0000C"
        assert agent["installedUpdateId"] == update_id("1.0.0")
        assert r.mcu.version == "1.0.0"
        # The same workflow again (a duplicate patch) is not a retry ...
        r.link.set_service(r.service(rel))
        version = r.link.desired["$version"]
        await r.link.wait_for(lambda link: link.state["deviceUpdate"]["service"]["av"] == version)
        assert r.agent.record.key == ("wf-1", None)  # acknowledged, and not run again
        assert r.mcu.flashed == ["1.1.0"]
        # ... a new retryTimestamp is.
        r.link.set_service(r.service(rel, retry="2026-12-06T13:00:00Z"))
        agent = await r.wait_agent(state=0, installedUpdateId=update_id("1.1.0"))
        assert agent["workflow"]["retryTimestamp"] == "2026-12-06T13:00:00Z"
        assert r.mcu.flashed == ["1.1.0", "1.1.0"]


async def test_cancel_mid_update_aborts_through_the_driver(
    tmp_path: Path, signer: TestSigner
) -> None:
    async with rig(tmp_path, signer) as r:
        rel = r.release("1.1.0")
        r.mcu.hold = asyncio.Event()
        r.link.set_service(r.service(rel))
        async with asyncio.timeout(10):
            await r.mcu.flashing.wait()
        r.link.set_service(r.service(rel, action=255))
        agent = await r.wait_agent(state=0, workflow={"action": 255, "id": "wf-1"})
        assert agent["lastInstallResult"]["resultCode"] == -1
        assert agent["installedUpdateId"] == update_id("1.0.0")
        assert r.mcu.version == "1.0.0"
        assert not r.mcu.in_bootloader  # abort started the installed app
        assert r.link.firmware["fwUpdateStatus"] == "current"


async def test_restart_keeps_a_finished_deployment(tmp_path: Path, signer: TestSigner) -> None:
    mcu, key = FakeMcu(), keys.generate(keys.Algorithm.ED25519)
    link = AduLink()
    async with rig(tmp_path, signer, mcu=mcu, link=link, key=key) as r:
        r.link.set_service(r.service(r.release("1.1.0")))
        await r.wait_agent(state=0, installedUpdateId=update_id("1.1.0"))
    fresh = AduLink()
    fresh._desired, fresh._version = dict(link._desired), link._version
    async with rig(tmp_path, signer, mcu=mcu, link=fresh, key=key) as r2:
        agent = await r2.wait_agent(state=0, installedUpdateId=update_id("1.1.0"))
        assert agent["lastInstallResult"]["resultCode"] == 700
        assert agent["workflow"]["id"] == "wf-1"
        assert mcu.flashed == ["1.1.0"]  # not flashed again


async def test_twin_firmware_is_ignored_for_an_adu_mcu(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        await r.wait_agent(state=0)
        rel = r.release("1.1.0")
        r.link.set_desired(rel.desired())
        r.link.set_service(r.service(r.release("1.2.0")))
        await r.wait_agent(state=0, installedUpdateId=update_id("1.2.0"))
        assert r.mcu.flashed == ["1.2.0"]


async def test_test_root_keys_only_when_configured(tmp_path: Path, signer: TestSigner) -> None:
    # A gateway with Microsoft's root keys alone refuses what a test root key signed.
    async with rig(tmp_path, signer, store=RootKeyStore.production()) as r:
        rel = r.release("1.1.0")
        value = r.service(rel)
        value.pop("rootKeyPackageUrl", None)
        r.link.set_service(value)
        agent = await r.wait_agent(state=255)
        assert agent["lastInstallResult"]["extendedResultCodes"] == "A0200006"  # no root key
        assert r.mcu.flashed == []


async def test_cancel_with_nothing_running_reports_idle(tmp_path: Path, signer: TestSigner) -> None:
    async with rig(tmp_path, signer) as r:
        await r.wait_agent(state=0)
        r.link.set_service(r.service(r.release("1.1.0"), action=255))
        agent = await r.wait_agent(workflow={"action": 255, "id": "wf-1"})
        assert agent["state"] == 0
        assert agent["lastInstallResult"]["resultCode"] == 200
        assert r.mcu.flashed == []


class RollingBackMcu(FakeMcu):
    """The new image fails its trial boot: the bootloader brings the old one back."""

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Any]:
        yield RollingBackDriver(self)


class RollingBackDriver(FakeDriver):
    async def install(self, image: Image, progress: ProgressFn = no_progress) -> InstallResult:
        result = await super().install(image, progress)
        mcu = self.mcu
        mcu.running = 1 - mcu.running  # back on the old slot
        return dataclasses.replace(
            result, outcome=Outcome.ROLLED_BACK, running_version=mcu.version, facts=mcu.facts()
        )


async def test_rolled_back_update_is_failed_with_the_boot_code(
    tmp_path: Path, signer: TestSigner
) -> None:
    async with rig(tmp_path, signer, mcu=RollingBackMcu()) as r:
        r.link.set_service(r.service(r.release("1.1.0")))
        agent = await r.wait_agent(state=255)
        result = agent["lastInstallResult"]
        assert result["extendedResultCodes"] == "3FE0000D"  # kind: boot
        assert result["resultDetails"].startswith("ROLLED_BACK")
        assert agent["installedUpdateId"] == update_id("1.0.0")
        assert r.link.firmware["fwUpdateStatus"] == "rolledback"

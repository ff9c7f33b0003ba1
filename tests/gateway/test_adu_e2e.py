"""Azure Device Update end to end: the official SDKs on both sides, MCUs on ptys.

``mcu-gateway image pack --adu-manifest`` and ``adu bundle`` publish, ``adu import``
and ``adu deploy`` drive the emulator's Device Update service through Microsoft's
azure-iot-deviceupdate SDK, ``fleet tag --adu-group`` groups the MCUs, and the
gateway answers ADU's agent contract for each MCU over the real azure-iot-device SDK.
What counts is what ADU itself reports: device states, installedUpdateId, compliance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from firmware import package
from gateway.adu.contract import CONTRACT_MODEL_ID
from gateway.adu.importmanifest import SUFFIX, import_manifest
from gateway.cli import main
from gateway.lab import Lab, sim_kind
from simulators.hub.server import HubServer
from tests.adu_support import adu_client, serve_dir
from tests.gateway.e2e import Running, device_ids, firmware_of, launch, reported, wait_hub
from tests.net import addr

pytestmark = pytest.mark.slow

NAME = "fleet-app"
TOKEN_ENV = "MCU_GATEWAY_TEST_ADU_TOKEN"
_hosts = iter(range(1, 200))


def _uid(version: str) -> str:
    return json.dumps(
        {"provider": "contoso", "name": NAME, "version": version}, separators=(",", ":")
    )


class AduLab:
    """A lab whose MCUs are ADU devices, with an upload folder ADU imports from."""

    def __init__(self, lab: Lab, upload: Path, base_url: str) -> None:
        self.lab = lab
        self.upload = upload
        self.base_url = base_url

    @property
    def facts(self) -> Any:
        return self.lab.facts

    def conn(self) -> list[str]:
        f = self.facts
        return [
            "--endpoint",
            f.adu_endpoint,
            "--instance",
            f.adu_instance,
            "--token-env",
            TOKEN_ENV,
            "--ca-file",
            f.ca_path,
        ]

    def config(self) -> Path:
        lab = self.lab
        bundle = lab.root / "download-cas.pem"
        bundle.write_bytes(
            (lab.root / "images-ca.pem").read_bytes() + Path(self.facts.ca_path).read_bytes()
        )
        text = lab.config_text().replace(str(lab.root / "images-ca.pem"), str(bundle))
        models = sorted({sim_kind(s.model).device_model for s in lab.sims})
        names = "".join(f'"{m}" = "{NAME}"\n' for m in models)
        text += (
            f'\n[adu]\nmodels = {json.dumps(models)}\nprovider = "contoso"\n'
            f"test_root_keys_file = {json.dumps(self.facts.adu_root_keys)}\n[adu.names]\n{names}"
        )
        path = lab.root / "gateway-adu.toml"
        path.write_text(text)
        return path

    def pack(self, version: str, models: Sequence[str], size: int, key: Any) -> list[str]:
        """Each model's package and import manifest, as ``image pack --adu-manifest`` writes."""
        manifests = []
        for model in models:
            kind = sim_kind(model)
            body = random.Random(f"{model} {version}").randbytes(size)
            payload = kind.payload(body, version)
            slug = re.sub(r"[^a-zA-Z0-9.-]", "-", kind.device_model)
            m = package.manifest_for(
                payload,
                provider="contoso",
                name=NAME if len(models) == 1 else f"app-{slug}",
                version=version,
                manufacturer=kind.manufacturer,
                model=kind.device_model,
            )
            blob = package.build(m, payload, key or self.lab.signing_key)
            file_name = f"app-{slug}-{version}.mcufw"
            (self.upload / file_name).write_bytes(blob)
            path = self.upload / f"app-{slug}-{version}{SUFFIX}"
            path.write_text(json.dumps(import_manifest(m, file_name=file_name, package=blob)))
            manifests.append(str(path))
        return manifests

    async def publish(
        self, version: str, models: Sequence[str], *, size: int = 32 * 1024, key: Any = None
    ) -> None:
        """Publish one update for ``models`` (a bundle if several) and import it via the SDK."""
        manifests = await asyncio.to_thread(self.pack, version, models, size, key)
        out = manifests[0]
        if len(manifests) > 1:
            out = str(self.upload / f"{NAME}-{version}{SUFFIX}")
            await self.cli(
                "adu", "bundle", *manifests, "-o", out, "--provider", "contoso", "--name", NAME
            )
        await self.cli("adu", "import", out, "--base-url", self.base_url, *self.conn())

    async def cli(self, *argv: str) -> None:
        code = await asyncio.to_thread(main, list(argv))
        assert code == 0, argv

    async def deploy(self, version: str, dep_id: str, group: str = "lab") -> None:
        await self.cli(
            "adu",
            "deploy",
            "--group",
            group,
            "--update",
            f"contoso/{NAME}/{version}",
            "--deployment-id",
            dep_id,
            *self.conn(),
        )

    async def tag(self, device_ids: Sequence[str], group: str = "lab") -> None:
        await self.cli("fleet", "tag", "--adu-group", group, *device_ids)

    def client(self) -> Any:
        return adu_client(self.facts)

    async def wait_agents(self, ids: Sequence[str], within: float, **fields: Any) -> None:
        def ok(s: HubServer) -> bool:
            return all(all(agent_of(s, d).get(k) == v for k, v in fields.items()) for d in ids)

        try:
            await wait_hub(self.lab, ok, within)
        except TimeoutError:
            assert self.lab.hub is not None
            server = self.lab.hub.call(lambda s: s)
            seen = {d: {k: agent_of(server, d).get(k) for k in fields} for d in ids}
            raise AssertionError(f"agents never reached {fields}: {seen}") from None


def agent_of(s: HubServer, device_id: str) -> dict[str, Any]:
    du = reported(s, device_id).get("deviceUpdate")
    agent = du.get("agent") if isinstance(du, dict) else None
    return agent if isinstance(agent, dict) else {}


@contextlib.asynccontextmanager
async def adu_lab(
    tmp_path: Path,
    models: Sequence[str],
    monkeypatch: pytest.MonkeyPatch,
    sim_args: Sequence[str] = ("--baud", "921600"),
) -> AsyncIterator[AduLab]:
    upload = tmp_path / "upload"
    upload.mkdir()
    async with Lab(tmp_path, addr(23, next(_hosts)), models, sim_args=sim_args) as lab:
        monkeypatch.setenv(TOKEN_ENV, lab.facts.adu_token)
        monkeypatch.setenv("MCU_GATEWAY_SERVICE_CS", lab.facts.service_connection_string)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", lab.facts.ca_path)
        monkeypatch.setenv("NO_PROXY", "*")
        with serve_dir(upload, addr(24, next(_hosts))) as base:
            yield AduLab(lab, upload, base)


@contextlib.asynccontextmanager
async def gateway(alab: AduLab) -> AsyncIterator[Running]:
    run = launch(alab.lab, alab.config())
    try:
        yield run
    finally:
        if not run.task.done():
            await run.halt()


async def adu_devices(alab: AduLab, run: Running, count: int) -> list[str]:
    """Wait until every MCU is an ADU device (model id and deviceUpdate reported)."""

    def ready(s: HubServer) -> bool:
        ids = [a.device_id for a in run.gateway.agents.values()]
        return len(ids) == count and all(
            s.hub.model_ids.get(d) == CONTRACT_MODEL_ID and "deviceProperties" in agent_of(s, d)
            for d in ids
        )

    await wait_hub(alab.lab, ready, within=90)
    return device_ids(run)


async def test_import_deploy_to_a_mixed_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ["vmcu-f4", "stm32f103", "vmcu_nrf52840"]  # mcugw, stm32-rom, mcuboot
    async with adu_lab(tmp_path, models, monkeypatch) as alab, gateway(alab) as run:
        ids = await adu_devices(alab, run, 3)
        # A factory image of a known version is reported as installed (our protocol and
        # MCUboot report their app's version; the STM32 ROM loader knows none yet).
        await alab.wait_agents([ids[0], ids[2]], 30, state=0, installedUpdateId=_uid("1.0.0"))
        await alab.wait_agents([ids[1]], 30, state=0, installedUpdateId=None)
        await alab.publish("2.0.0", models)
        await alab.tag(ids)
        client = alab.client()
        before = await asyncio.to_thread(
            client.device_management.get_update_compliance_for_group, "lab"
        )
        assert before["totalDeviceCount"] == 3
        assert before["onLatestUpdateDeviceCount"] == 0
        await alab.deploy("2.0.0", "rollout-1")
        await alab.wait_agents(ids, 240, state=0, installedUpdateId=_uid("2.0.0"))

        status = await asyncio.to_thread(
            client.device_management.get_deployment_status, "lab", "rollout-1"
        )
        subgroups = status["subgroupStatus"]
        assert len(subgroups) == 3  # one device class per model, one update for all
        assert all(s["devicesCompletedSucceededCount"] == 1 for s in subgroups)
        after = await asyncio.to_thread(
            client.device_management.get_update_compliance_for_group, "lab"
        )
        assert after["onLatestUpdateDeviceCount"] == 3
        assert alab.lab.hub is not None
        server = alab.lab.hub.call(lambda s: s)
        for d in ids:
            agent = agent_of(server, d)
            assert agent["lastInstallResult"]["resultCode"] == 700
            assert firmware_of(server, d)["currentFwVersion"] == "2.0.0"
        for agent in run.gateway.agents.values():
            assert agent.facts.installed_version == "2.0.0"  # the MCU itself says so

        # What an operator runs: the group's status, and a twin's service value checked.
        capsys.readouterr()
        await alab.cli("adu", "status", "--group", "lab", "--json", *alab.conn())
        summary = json.loads(capsys.readouterr().out)
        assert summary["deploymentId"] == "rollout-1"
        assert {d["state"] for d in summary["devices"]} == {"Succeeded"}
        value = server.hub.twins[ids[0]].desired["deviceUpdate"]["service"]
        service_file = tmp_path / "service.json"
        service_file.write_text(json.dumps(value))
        await alab.cli(
            "adu", "verify", str(service_file), "--test-root-keys", alab.facts.adu_root_keys
        )
        assert f"contoso/{NAME}/2.0.0" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["adu", "verify", str(service_file)]) == 1
        assert "no root key" in capsys.readouterr().err  # production keys only: refused


async def test_fail_retry_cancel_and_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ["vmcu-f4"]
    # 115200 baud: a 96 KB image takes ~9 s on the wire, time to cut it.
    async with adu_lab(tmp_path, models, monkeypatch, sim_args=("--baud", "115200")) as alab:
        alab.lab.gateway_baud = 115200
        client = alab.client()
        sim = alab.lab.sims[0]
        async with gateway(alab) as run:
            (device_id,) = await adu_devices(alab, run, 1)
            await alab.tag([device_id])

            # 1. A package signed by a key the gateway does not trust: Failed, readably.
            from firmware import keys

            await alab.publish("2.0.0", models, key=keys.generate(keys.Algorithm.ED25519))
            await alab.deploy("2.0.0", "bad")
            await alab.wait_agents([device_id], 90, state=255)
            assert alab.lab.hub is not None
            result = agent_of(alab.lab.hub.call(lambda s: s), device_id)["lastInstallResult"]
            assert result["extendedResultCodes"] == "3FE00010"  # kind: trust
            assert result["resultDetails"].startswith("UNTRUSTED_KEY")
            device = await asyncio.to_thread(client.device_management.get_device, device_id)
            assert device["deploymentStatus"] == "Failed"
            assert device["lastInstallResult"]["extendedResultCode"] == 0x3FE00010
            capsys.readouterr()
            await alab.cli("adu", "status", "--group", "lab", *alab.conn())
            out = capsys.readouterr().out
            assert f"{device_id}: Failed (ERC 3FE00010) UNTRUSTED_KEY" in out

            # 2. A good update, cut by a gateway restart mid-transfer, then finished.
            await alab.publish("2.1.0", models, size=96 * 1024)
            await alab.deploy("2.1.0", "good")

            def writing(s: HubServer) -> bool:
                fw = firmware_of(s, device_id)
                return fw.get("fwUpdateStatus") == "applying" and fw.get("bytesWritten", 0) > 16384

            await wait_hub(alab.lab, writing, within=90)
        async with gateway(alab) as run:  # a new gateway process state, same state dir
            await alab.wait_agents([device_id], 180, state=0, installedUpdateId=_uid("2.1.0"))
            assert alab.lab.hub is not None
            fw = firmware_of(alab.lab.hub.call(lambda s: s), device_id)
            assert fw["currentFwVersion"] == "2.1.0"
            assert fw.get("resumedFrom", 0) > 0  # the MCU kept its partial slot

            # 3. Cancel mid-update: the MCU keeps running 2.1.0.
            await alab.publish("2.2.0", models, size=96 * 1024)
            await alab.deploy("2.2.0", "cancelled")
            await wait_hub(alab.lab, writing, within=90)
            await alab.cli(
                "adu",
                "deploy",
                "--group",
                "lab",
                "--deployment-id",
                "cancelled",
                "--cancel",
                *alab.conn(),
            )
            await wait_hub(
                alab.lab,
                lambda s: (
                    agent_of(s, device_id).get("workflow", {}).get("action") == 255
                    and agent_of(s, device_id).get("state") == 0
                ),
                within=60,
            )
            agent = agent_of(alab.lab.hub.call(lambda s: s), device_id)
            assert agent["lastInstallResult"]["resultCode"] == -1
            assert agent["installedUpdateId"] == _uid("2.1.0")
            (mcu,) = run.gateway.agents.values()
            assert mcu.facts.installed_version == "2.1.0"

            # 4. The MCU unplugged mid-update: Failed; back and retried: Succeeded.
            await alab.deploy("2.2.0", "retried")
            await wait_hub(alab.lab, writing, within=90)
            await sim.kill()
            await alab.wait_agents([device_id], 90, state=255)
            await sim.start()
            await wait_hub(
                alab.lab,
                lambda s: reported(s, device_id).get("mcu", {}).get("connected") is True,
                within=60,
            )
            await alab.cli(
                "adu",
                "deploy",
                "--group",
                "lab",
                "--deployment-id",
                "retried",
                "--retry",
                *alab.conn(),
            )
            await alab.wait_agents([device_id], 180, state=0, installedUpdateId=_uid("2.2.0"))
            status = await asyncio.to_thread(
                client.device_management.get_deployment_status, "lab", "retried"
            )
            assert status["subgroupStatus"][0]["devicesCompletedSucceededCount"] == 1

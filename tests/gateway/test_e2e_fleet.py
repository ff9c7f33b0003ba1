"""End to end: a two-ring rollout over real gateways' MCUs, halted by a refused package.

The real pieces: the gateway with the device SDK over TLS, virtual MCUs on
ptys, HTTPS downloads, and `mcu-gateway fleet` as its own process driving the
hub emulator's configurations through the official service SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.lab import Lab
from tests.gateway.e2e import device_ids, firmware_of, start_gateway, statuses, wait_hub
from tests.net import addr

MODELS = ["vmcu-f4", "vmcu-f4", "vmcu-l0", "vmcu-f4"]


async def fleet(lab: Lab, *args: str, within: float = 180) -> tuple[int, str, str]:
    env = {**os.environ, "MCU_GATEWAY_SERVICE_CS": lab.facts.service_connection_string}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "fleet", *args, "--ca-file", lab.facts.ca_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(within):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_two_rings_halt_on_a_refused_package_and_pinpoint_it(tmp_path: Path) -> None:
    lab = Lab(tmp_path, addr(12, 101), MODELS, hub_time_scale=1500)
    async with lab:
        run = await start_gateway(lab)
        try:
            await wait_hub(lab, lambda s: len(run.gateway.agents) == len(MODELS), within=60)
            ids = device_ids(run)
            await wait_hub(lab, lambda s: all(firmware_of(s, d) for d in ids), within=60)
            canary, refusing = ids[0], ids[2]
            code, _, err = await fleet(lab, "tag", *ids, "--group", "lab")
            assert code == 0, err
            code, _, err = await fleet(lab, "tag", canary, "--ring", "canary")
            assert code == 0, err

            release = lab.release("2.0.0", "vmcu-f4")
            code, out, err = await fleet(
                lab, "deploy", "--name", "f4-v2", "--package-uri", release.url,
                "--check-value", release.sha256, "--size", str(release.size),
                "--version", "2.0.0", "--target", "tags.[[group]] = 'lab'", "--rings", "canary,all",
                "--package-ca-file", str(lab.root / "images-ca.pem"),
                "--wait", "--interval", "0.2", "--timeout", "150",
            )  # fmt: skip
            assert code == 2, out + err
            assert "ring 1 (canary) passed: 1 of 1 current; ring 2 started" in out
            assert (
                "rollout f4-v2 halted: ring 2 (all): 1 of 4 MCUs failed (25% > 5% allowed)" in out
            )

            where = "tags.[[group]] = 'lab'"
            code, out, err = await fleet(lab, "status", "--json", "--where", where)
            assert code == 0, err
            status = json.loads(out)
            (failure,) = status["failures"]
            agent = next(a for a in run.gateway.agents.values() if a.device_id == refusing)
            assert failure["device_id"] == refusing
            assert failure["code"] == "INCOMPATIBLE_MODEL" and failure["model"] == "vmcu-l0"
            assert failure["gateway"] == _reported_mcu(lab, refusing)["gatewayDeviceId"]
            assert failure["port"] == agent.port and failure["phase"] == "verifying"
            # The healthy ones still finish: the halted ring's configuration stays applied.
            await wait_hub(
                lab,
                lambda s: all(
                    firmware_of(s, d).get("currentFwVersion") == "2.0.0"
                    for d in ids
                    if d != refusing
                ),
                within=90,
            )
            code, out, _ = await fleet(lab, "rollouts", "--json")
            (rollout,) = json.loads(out)
            assert rollout["state"] == "halted" and len(rollout["started"]) == 2

            # Retry re-targets only the failed MCU with a new desired state (a URI
            # fragment): its gateway downloads and verifies again, and refuses again.
            tries = statuses(lab, refusing).count("verifying")
            code, out, err = await fleet(lab, "retry", "f4-v2")
            assert code == 0, err
            assert f"f4-v2-retry1 re-targets 1 failed MCU(s): {refusing}" in out

            def tried_again(s: Any) -> bool:
                # Runs on the hub's own thread: read its state, never call into it.
                seen = [(p.get("firmware") or {}).get("fwUpdateStatus")
                        for p in s.hub.reported_log.get(refusing, ())]  # fmt: skip
                again = [x for i, x in enumerate(seen) if x and (i == 0 or seen[i - 1] != x)]
                done = firmware_of(s, refusing).get("fwUpdateStatus") == "error"
                return again.count("verifying") > tries and done

            await wait_hub(lab, tried_again, within=60)
            assert firmware_of(lab.hub.call(lambda s: s), refusing)["error"]["code"] == (
                "INCOMPATIBLE_MODEL"
            )
        finally:
            await run.halt()


def _reported_mcu(lab: Lab, device_id: str) -> dict[str, Any]:
    assert lab.hub is not None
    mcu = lab.hub.twin(device_id).reported.get("mcu")
    assert isinstance(mcu, dict)
    return mcu

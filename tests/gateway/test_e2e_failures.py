"""End to end: bad desired states and bad packages end in a specific error, touching nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from firmware import keys
from tests.gateway.e2e import device_ids, firmware_of, running_lab, set_desired, wait_hub


def _slots(run: Any, device_id: str) -> Any:
    agent = next(a for a in run.gateway.agents.values() if a.device_id == device_id)
    return [(s.state, s.version, s.sha256) for s in agent.info.slots]


async def test_bad_desired_states_end_in_specific_errors(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ["vmcu-f4", "vmcu-l0"]) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: len(run.gateway.agents) == 2, within=60)
        victim, bystander = device_ids(run)
        before = _slots(run, victim)

        good = lab.release("2.0.0", "vmcu-f4")
        other_key = keys.generate(keys.Algorithm.ED25519)
        signed = lab.release("2.0.3", "vmcu-f4")
        forged = signed.blob[:-1] + bytes([signed.blob[-1] ^ 0x01])  # last signature byte
        cases: list[tuple[str, Any]] = [
            ("UNTRUSTED_KEY", lab.release("2.0.1", "vmcu-f4", key=other_key).desired()),
            ("SIGNATURE_INVALID", lab.publish("forged", forged, "2.0.3", "vmcu-f4").desired()),
            ("DOWNLOAD_HASH_MISMATCH", {**good.desired(), "fwPackageCheckValue": "ab" * 32}),
            ("INCOMPATIBLE_MODEL", lab.release("2.0.2", "vmcu-l0").desired()),
            ("DOWNGRADE", lab.release("0.9.0", "vmcu-f4").desired()),
            ("PACKAGE_NOT_FOUND", {**good.desired(), "fwPackageURI": good.url + ".missing"}),
            ("DESIRED_BAD_URI_SCHEME", {**good.desired(), "fwPackageURI": "file:///etc/passwd"}),
            ("DESIRED_BAD_VERSION", {**good.desired(), "fwVersion": "two"}),
            ("DESIRED_NOT_OBJECT", "2.0.0"),
        ]
        ok = lab.release("3.0.0", "vmcu-l0")
        await asyncio.to_thread(set_desired, lab, bystander, ok.desired())
        for code, firmware in cases:
            await asyncio.to_thread(set_desired, lab, victim, firmware)

            def failed(s: Any, code: str = code) -> bool:
                err = firmware_of(s, victim).get("error") or {}
                return bool(firmware_of(s, victim).get("fwUpdateStatus") == "error") and str(
                    err.get("code", "")
                ).startswith(code)

            await wait_hub(lab, failed, within=30)
            assert _slots(run, victim) == before, code
        await wait_hub(
            lab,
            lambda s: (
                firmware_of(s, bystander).get("currentFwVersion") == "3.0.0"
                and firmware_of(s, bystander).get("fwUpdateStatus") == "current"
            ),
            within=60,
        )

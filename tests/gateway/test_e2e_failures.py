"""End to end: bad desired states and bad packages end in a specific error, touching nothing.

One lab and gateway serve the whole module (starting one per case would cost
seconds each); every case is its own test, so one failure never hides the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from firmware import keys
from gateway.lab import Lab
from tests.gateway.e2e import Running, device_ids, firmware_of, running_lab, set_desired, wait_hub

pytestmark = pytest.mark.asyncio(loop_scope="module")

# code -> how to build the desired firmware from the lab (a good 2.0.0 release at hand)
Case = Callable[[Lab, Any], Any]
CASES: dict[str, Case] = {
    "UNTRUSTED_KEY": lambda lab, good: lab.release(
        "2.0.1", "vmcu-f4", key=keys.generate(keys.Algorithm.ED25519)
    ).desired(),
    "SIGNATURE_INVALID": lambda lab, good: lab.publish(
        "forged", _flip_last(lab.release("2.0.3", "vmcu-f4").blob), "2.0.3", "vmcu-f4"
    ).desired(),
    "DOWNLOAD_HASH_MISMATCH": lambda lab, good: {
        **good.desired(),
        "fwPackageCheckValue": "ab" * 32,
    },
    "INCOMPATIBLE_MODEL": lambda lab, good: lab.release("2.0.2", "vmcu-l0").desired(),
    "DOWNGRADE": lambda lab, good: lab.release("0.9.0", "vmcu-f4").desired(),
    "PACKAGE_NOT_FOUND": lambda lab, good: {**good.desired(), "fwPackageURI": good.url + ".gone"},
    "DOWNLOAD_SIZE_MISMATCH": lambda lab, good: {**good.desired(), "fwPackageSize": good.size + 7},
    "DESIRED_BAD_URI_SCHEME": lambda lab, good: {
        **good.desired(),
        "fwPackageURI": "file:///etc/passwd",
    },
    "DESIRED_BAD_VERSION": lambda lab, good: {**good.desired(), "fwVersion": "two"},
    "DESIRED_NOT_OBJECT": lambda lab, good: "2.0.0",
}


def _flip_last(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0x01])  # the last signature byte


def _slots(run: Running, device_id: str) -> Any:
    agent = next(a for a in run.gateway.agents.values() if a.device_id == device_id)
    return [(s.state, s.version, s.sha256) for s in agent.facts.slots]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab_run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with running_lab(tmp_path_factory.mktemp("failures"), ["vmcu-f4", "vmcu-l0"]) as run:
        await wait_hub(run.lab, lambda s: len(run.gateway.agents) == 2, within=60)
        yield run


@pytest.mark.parametrize("code", list(CASES))
async def test_bad_desired_state_ends_in_its_specific_error(lab_run: Running, code: str) -> None:
    lab = lab_run.lab
    victim, _ = device_ids(lab_run)
    before = _slots(lab_run, victim)
    firmware = CASES[code](lab, lab.release("2.0.0", "vmcu-f4"))
    await asyncio.to_thread(set_desired, lab, victim, firmware)

    def failed(s: Any) -> bool:
        fw = firmware_of(s, victim)
        return fw.get("fwUpdateStatus") == "error" and (fw.get("error") or {}).get("code") == code

    await wait_hub(lab, failed, within=30)
    assert _slots(lab_run, victim) == before


async def test_the_other_mcu_updates_meanwhile(lab_run: Running) -> None:
    lab = lab_run.lab
    _, bystander = device_ids(lab_run)
    await asyncio.to_thread(set_desired, lab, bystander, lab.release("3.0.0", "vmcu-l0").desired())
    await wait_hub(
        lab,
        lambda s: (
            firmware_of(s, bystander).get("currentFwVersion") == "3.0.0"
            and firmware_of(s, bystander).get("fwUpdateStatus") == "current"
        ),
        within=60,
    )

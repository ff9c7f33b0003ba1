"""A single-slot MCU (STM32 ROM) that goes silent after its app was erased (issue 17.6).

The install erases the version record first; if the MCU is then off, the twin
must not go on claiming the version it ran before: it says what is known (no
version, the install unfinished) until the MCU answers again.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import PolicySettings
from protocols.driver import DriverError, Safety, Step
from tests.gateway.fakes import FakeMcu, release
from tests.gateway.test_agent import rig


def _single_slot() -> FakeMcu:
    mcu = FakeMcu("1.0.0")
    mcu.safety = Safety.SINGLE_SLOT
    mcu.failures = [DriverError("MCU_DISCONNECTED", "port closed (MCU off)", Step.WRITE)]
    mcu.off_on_failure = True
    return mcu


async def test_an_mcu_off_after_its_record_was_erased_has_no_version_in_the_twin(
    tmp_path: Path,
) -> None:
    mcu = _single_slot()
    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_base_s=3600)) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw["error"]["code"] == "MCU_DISCONNECTED"
        assert fw.get("currentFwVersion") is None  # not the 1.0.0 it ran before the erase
        slots = r.link.state["mcu"]["slots"]
        assert (slots[0]["state"], slots[0]["version"]) == ("invalid", "")
        assert r.agent.facts.installed_version is None
        # Every report from the erase on: never 1.0.0 again.
        erased_at = next(
            i for i, fw in enumerate(r.link.firmware_reports())
            if "currentFwVersion" in fw and fw["currentFwVersion"] is None
        )  # fmt: skip
        later = r.link.firmware_reports()[erased_at:]
        assert all(fw.get("currentFwVersion") in (None, "2.0.0") for fw in later), later


async def test_an_mcu_that_answers_after_the_failure_is_reported_as_it_says(
    tmp_path: Path,
) -> None:
    mcu = _single_slot()
    mcu.off_on_failure = False  # the link failed, the MCU stayed on
    async with rig(tmp_path, mcu=mcu, policy=PolicySettings(retry_base_s=3600)) as r:
        r.link.set_desired(release(r.downloader, r.key, "2.0.0").desired())
        fw = await r.wait_fw(fwUpdateStatus="error")
        assert fw.get("currentFwVersion") is None  # its own facts: the record is gone
        assert r.link.state["mcu"]["slots"][0]["state"] == "invalid"

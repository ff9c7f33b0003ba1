"""The update decides on failure kinds and typed install figures, not on one driver's strings."""

from __future__ import annotations

import hashlib
from pathlib import Path

from firmware.twin import parse_desired
from gateway.journal import Outcome
from gateway.update import UpdateFailed, final_report
from protocols.driver import DriverError, InstallResult, Step, TransferEncoding
from protocols.driver import Outcome as InstallOutcome
from protocols.mcuboot.codes import McubootCode
from protocols.mcugw.codes import McugwCode
from tests.gateway.fakes import FakeDownloader, FakeMcu
from tests.gateway.test_delta_packages import (  # noqa: F401 (fixtures)
    NEW,
    OLD,
    _DeltaMcu,
    _desired,
    _update,
    delta_pkg,
    packages,
)

DESIRED = parse_desired(
    {
        "fwVersion": "2.0.0",
        "fwPackageURI": "https://cdn.example/fw.mcufw",
        "fwPackageCheckValue": "ab" * 32,
    }
)


async def test_any_delta_kind_refusal_from_the_device_falls_back_to_the_full_package(
    tmp_path: Path,
    delta_pkg: dict[str, Path],  # noqa: F811 (the imported fixture)
) -> None:
    # Not MCU_DELTA_BASE_MISMATCH: another code of kind "delta" takes the same path.
    mcu, downloader = _DeltaMcu(OLD), FakeDownloader(tmp_path)
    mcu.failures = [DriverError(McugwCode.PATCH_REJECTED, "reads outside the base", Step.WRITE)]
    result = await _update(tmp_path, mcu, downloader, _desired(downloader, delta_pkg, full=True))
    assert result.outcome is Outcome.CURRENT
    assert downloader.fetches == ["https://cdn.example/delta", "https://cdn.example/1.1.0"]
    assert mcu.slots[1].sha256 == hashlib.sha256(NEW).hexdigest()


def test_the_twin_shows_the_typed_transfer_figures_of_any_driver() -> None:
    facts = FakeMcu().facts()
    flash = InstallResult(
        outcome=InstallOutcome.CONFIRMED, version="2.0.0", sha256="00" * 32, slot=1,
        bytes=4096, seconds=1.0, transfer_seconds=0.8, wire_bytes_tx=1500, wire_bytes_rx=64,
        retransmits=0, resumed_from=0, running_version="2.0.0", facts=facts,
        encoding=TransferEncoding.COMPRESSED, payload_bytes=1400,
    )  # fmt: skip
    fw = final_report(Outcome.CURRENT, desired=DESIRED, started="t", installed="2.0.0",
                      flash=flash)["firmware"]  # fmt: skip
    assert (fw["transferEncoding"], fw["payloadBytes"]) == ("compressed", 1400)


def test_a_failure_reports_its_code_and_kind() -> None:
    failure = UpdateFailed(McubootCode.FRAME_ERROR, "every answer damaged", "applying")
    assert failure.kind.transient
    fw = final_report(Outcome.ERROR, desired=DESIRED, started="t", installed="1.0.0",
                      failure=failure)["firmware"]  # fmt: skip
    assert fw["error"]["code"] == "MCU_FRAME_ERROR"
    assert fw["error"]["kind"] == "link"

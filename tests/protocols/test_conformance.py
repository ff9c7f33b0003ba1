"""The conformance suite: it passes a correct device and catches devices that break rules."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from cobs import cobs

from protocols.mcugw.conformance import CHECKS, SuiteReport, run_suite
from protocols.mcugw.crc import crc32
from simulators.mcu.core import McuCore
from simulators.mcu.flash import Flash
from simulators.mcu.link import McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS
from simulators.mcu.trailer import RecordKind, SlotTrailer
from tests.sim_harness import cli, running_sim

FAST = ("--baud", "0", "--flash-scale", "0.05")
#: The Python MCU programs a non-final DATA whose length is off the write_size grid
#: (then fails on the next write); the rule comes with issue 8's simulator fix.


class _CrcBlindTransport(MemoryTransport):
    """A broken device: it repairs the CRC of every frame it receives, so it acts on damage."""

    def _fix(self, data: bytes) -> bytes:
        out = bytearray()
        for segment in data.split(b"\x00"):
            if not segment:
                out += b"\x00"
                continue
            try:
                body = cobs.decode(segment)
            except cobs.DecodeError:
                out += segment + b"\x00"
                continue
            if len(body) >= 10:
                body = body[:-4] + crc32(body[:-4]).to_bytes(4, "little")
            out += cobs.encode(body) + b"\x00"
        return bytes(out[:-1])  # split() added one delimiter too many

    async def write(self, data: bytes) -> None:
        await super().write(self._fix(data))


class _CheckpointLosingTrailer(SlotTrailer):
    """A broken device: CHECKPOINT records never reach flash."""

    def append(
        self, kind: RecordKind, arg: int = 0, sha256: bytes = b"", version: str = ""
    ) -> float:
        if kind is RecordKind.CHECKPOINT:
            return 0.0
        return super().append(kind, arg, sha256, version)


async def _run(
    transport: MemoryTransport | None = None,
    *,
    write: bool = True,
    only: set[str] | None = None,
    patch: Callable[[McuCore], None] | None = None,
) -> tuple[SuiteReport, McuCore]:
    model = MODELS["vmcu-l0"]
    core = McuCore(model, Flash(model), b"\x01\x02")
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    if patch is not None:
        patch(core)
    transport = transport or MemoryTransport()
    driver = McuDriver(core, 0, transport.deliver)
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        async with asyncio.timeout(60):
            report = await run_suite(transport, port="mem", baud=0, write=write, only=only)
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task
    return report, core


def _outcomes(report: SuiteReport) -> dict[str, str]:
    return {r.id: r.outcome for r in report.results}


async def test_python_sim_passes_every_check() -> None:
    everything = {c.id for c in CHECKS}
    report, _ = await _run(only=everything)
    failed = {r.id: r.detail for r in report.results if r.outcome != "pass"}
    assert failed == {}
    assert len(report.results) == len(everything)
    assert report.ok


async def test_without_write_flash_is_untouched() -> None:
    seen: list[bytes] = []

    def remember(core: McuCore) -> None:
        seen.append(core.flash.snapshot())

    report, core = await _run(write=False, patch=remember)
    assert core.flash.snapshot() == seen[0]
    outcomes = _outcomes(report)
    writers = {c.id for c in CHECKS if c.write}
    assert {outcomes[w] for w in writers} == {"skip"}
    assert all(outcomes[c.id] == "pass" for c in CHECKS if not c.write)
    # Found running its app, left running it.
    assert report.device["mode_after"] == "app"
    assert core.state.value == "app"


async def test_fails_a_device_that_ignores_the_crc() -> None:
    report, _ = await _run(_CrcBlindTransport(), only={"hello-layout", "info-layout",
                                                       "reset-stay", "crc-reject", "begin-fresh",
                                                       "data-bad-crc"})  # fmt: skip
    outcomes = _outcomes(report)
    assert outcomes["crc-reject"] == "fail"
    assert outcomes["data-bad-crc"] == "fail"
    assert not report.ok
    detail = next(r.detail for r in report.results if r.id == "data-bad-crc")
    assert "bad-CRC DATA was answered" in detail


async def test_fails_a_device_that_loses_its_checkpoints() -> None:
    def lose(core: McuCore) -> None:
        core.trailers = [_CheckpointLosingTrailer(core.flash, i) for i in (0, 1)]

    report, _ = await _run(patch=lose, only={"hello-layout", "info-layout", "reset-stay",
                                            "begin-fresh", "resume-checkpoint"})  # fmt: skip
    result = next(r for r in report.results if r.id == "resume-checkpoint")
    assert result.outcome == "fail"
    assert "checkpoint was lost" in result.detail
    assert result.section == "§9.3"


@pytest.mark.parametrize("impl", ["c", "qemu"])
def test_cli_passes_the_c_builds_with_json_and_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    junit = tmp_path / "conformance.xml"
    with running_sim(tmp_path / "mcu", *FAST, "--impl", impl) as sim:
        code, out, _ = cli(
            capsys, "conformance", "--port", sim.port, "--write", "--json", "--junit", str(junit)
        )
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0, [c for c in report["checks"] if c["outcome"] != "pass"]
    assert report["ok"] is True
    assert report["passed"] == len(CHECKS)
    assert report["failed"] == report["skipped"] == 0
    cases = ET.parse(junit).getroot().findall("testcase")
    assert len(cases) == len(CHECKS)
    assert all(c.get("classname", "").startswith("protocol.md §") for c in cases)
    assert not ET.parse(junit).getroot().findall(".//failure")


def test_cli_reports_failures_in_text_and_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "c.xml"
    # A device muted on CONFIRM breaks §9.4: CONFIRM must be answered.
    with running_sim(tmp_path / "mcu", *FAST, "--impl", "c", "--fault", "mute=confirm") as sim:
        code, out, err = cli(
            capsys, "conformance", "--port", sim.port, "--check", "hello-layout",
            "--check", "info-layout", "--check", "reset-stay",
            "--check", "confirm-in-bootloader", "--junit", str(junit),
        )  # fmt: skip
    assert code == 1
    assert "FAIL  §9.4   confirm-in-bootloader" in out
    assert "3 passed, 1 failed, 0 skipped" in err
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert len(failures) == 1
    assert "no answer to CONFIRM" in (failures[0].get("message") or "")


def test_cli_rejects_an_unknown_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "conformance", "--port", "loop://", "--check", "nope")
    assert code != 0
    assert "unknown check 'nope'" in err

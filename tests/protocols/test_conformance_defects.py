"""Each conformance check fails its own defect and nothing else; liberties the spec allows pass.

The suite runs whole (with --write) against every device of
tests/protocols/conformance_devices.py over an in-memory link, and every check
quotes its rule verbatim from docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols.mcugw.conformance import CHECKS, SuiteReport
from simulators.mcu.core import McuCore
from tests.protocols.conformance_devices import CONFORMING, DEFECTS, run_device

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _sections() -> dict[str, str]:
    """'§N.M' -> that section's text, with markdown emphasis and line breaks removed."""
    out: dict[str, str] = {}
    current = ""
    for line in DOC.read_text().splitlines():
        m = re.match(r"#{2,3} (\d+(?:\.\d+)?)\.? ", line)
        if m:
            current = "§" + m.group(1)
        if current:
            out[current] = out.get(current, "") + " " + line
    return {k: _plain(v) for k, v in out.items()}


def _plain(text: str) -> str:
    return " ".join(text.replace("**", "").replace("`", "").split())


def test_every_check_is_covered_by_a_defect() -> None:
    assert sorted(DEFECTS) == sorted(c.id for c in CHECKS)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.id)
def test_each_rule_is_quoted_from_its_section(check: object) -> None:
    sections = _sections()
    for rule in check.rules:  # type: ignore[attr-defined]
        section, _, quote = rule.partition(": ")
        assert section in sections, rule
        assert _plain(quote) in sections[section], f"{check.id}: not in {section}: {quote}"  # type: ignore[attr-defined]


#: Devices run at once: the suite mostly waits on its own §11 timeouts, not the CPU.
CONCURRENT = 6


@pytest.fixture(scope="module")
def reports() -> dict[str, SuiteReport]:
    """The whole suite (with --write) against every device, each on its own memory link."""
    devices = {f"defect:{k}": v for k, v in DEFECTS.items()}
    devices |= {f"conforming:{k}": v for k, v in CONFORMING.items()}

    async def all_of_them() -> dict[str, SuiteReport]:
        gate = asyncio.Semaphore(CONCURRENT)

        async def one(make: Callable[[], McuCore]) -> SuiteReport:
            async with gate:
                return await run_device(make())

        results = await asyncio.gather(*(one(make) for make in devices.values()))
        return dict(zip(devices, results, strict=True))

    return asyncio.run(all_of_them())


@pytest.mark.parametrize("check_id", sorted(DEFECTS))
def test_a_defect_fails_exactly_its_check(reports: dict[str, SuiteReport], check_id: str) -> None:
    report = reports[f"defect:{check_id}"]
    failed = {r.id: r.detail for r in report.results if r.outcome == "fail"}
    assert list(failed) == [check_id], failed
    assert not report.ok
    assert len(report.results) == len(CHECKS)  # it ran to the end
    # The failure names the rule it broke, quoted.
    result = next(r for r in report.results if r.id == check_id)
    assert result.rules and all(rule.startswith("§") for rule in result.rules)


@pytest.mark.parametrize("name", sorted(CONFORMING))
def test_a_conforming_device_passes(reports: dict[str, SuiteReport], name: str) -> None:
    report = reports[f"conforming:{name}"]
    failed = {r.id: r.detail for r in report.results if r.outcome == "fail"}
    assert failed == {}
    assert report.ok

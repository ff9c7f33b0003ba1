"""Suite results and their JSON and JUnit XML forms."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckResult:
    id: str
    section: str  # docs/protocol.md section, e.g. "§9.3"
    title: str
    outcome: str  # "pass", "fail" or "skip"
    detail: str = ""
    seconds: float = 0.0
    rules: tuple[str, ...] = ()  # the quoted requirements of docs/protocol.md it enforces


@dataclass
class SuiteReport:
    port: str
    device: dict[str, Any] = field(default_factory=dict)
    write: bool = False
    results: list[CheckResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count("fail") == 0 and self.count("pass") > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "port": self.port,
            "write": self.write,
            "device": self.device,
            "passed": self.count("pass"),
            "failed": self.count("fail"),
            "skipped": self.count("skip"),
            "checks": [asdict(r) for r in self.results],
        }


def junit_xml(report: SuiteReport) -> bytes:
    """One <testcase> per check, classname = the protocol section it tests."""
    suite = ET.Element(
        "testsuite",
        name="mcugw-conformance",
        tests=str(len(report.results)),
        failures=str(report.count("fail")),
        skipped=str(report.count("skip")),
        time=f"{sum(r.seconds for r in report.results):.3f}",
    )
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"protocol.md {r.section}",
            name=r.id,
            time=f"{r.seconds:.3f}",
        )
        if r.outcome == "fail":
            text = "\n".join([f"{r.title}: {r.detail}", *(f"rule {q}" for q in r.rules)])
            ET.SubElement(case, "failure", message=r.detail).text = text
        elif r.outcome == "skip":
            ET.SubElement(case, "skipped", message=r.detail)
    out: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return out

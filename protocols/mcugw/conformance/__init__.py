"""Conformance suite for devices that claim the mcugw serial protocol (docs/protocol.md).

The checks talk to a device through any :class:`protocols.transport.Transport`
and name the section of docs/protocol.md each one tests; those that write flash
run only when asked to. ``mcu-gateway conformance`` is the command-line front.
"""

from protocols.mcugw.conformance.checks import CHECKS, Check
from protocols.mcugw.conformance.report import CheckResult, SuiteReport, junit_xml
from protocols.mcugw.conformance.runner import run_suite

__all__ = ["CHECKS", "Check", "CheckResult", "SuiteReport", "junit_xml", "run_suite"]

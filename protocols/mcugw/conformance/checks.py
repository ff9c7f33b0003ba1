"""The conformance checks, in the order they run; each names its docs/protocol.md section.

Importing the check modules registers their checks: first the device as found
and the framing, then the bootloader's commands, then (with ``--write``) a
scratch transfer through to the trial boot.
"""

from __future__ import annotations

from protocols.mcugw.conformance import basics, commands, encoded, transfer
from protocols.mcugw.conformance.ctx import CHECKS, Check, Ctx, Failed, Skipped

__all__ = [
    "CHECKS", "Check", "Ctx", "Failed", "Skipped", "basics", "commands", "encoded", "transfer",
]  # fmt: skip

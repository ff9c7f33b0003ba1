"""Fleet rollouts on IoT Hub: groups, phased deployments, status.

The fleet side runs on IoT Hub itself. Groups and rings are twin tags,
deployments are automatic device configurations, and every rollout's state
lives in the configurations' ids and labels, so the ``mcu-gateway fleet`` CLI
holds no state of its own and can be stopped and rerun from anywhere.

Modules: :mod:`.hub` wraps the official service SDK behind a small protocol,
:mod:`.rollout` is the pure rollout state machine, :mod:`.status` aggregates
the fleet view and :mod:`.report` renders it as self-contained HTML.
"""

from __future__ import annotations

from gateway.fleet.errors import FleetError

__all__ = ["FleetError"]

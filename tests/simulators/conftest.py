from __future__ import annotations

from tests.simulators.hub_fixtures import hub, hub_facts, registry_manager

__all__ = ["hub", "hub_facts", "registry_manager"]

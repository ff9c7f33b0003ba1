"""DPS on a full disk (issue 17.1): an assignment that cannot be cached does not stop an
MCU from getting its identity, and a stale one that cannot be dropped is not used again."""

from __future__ import annotations

from gateway.config import DpsSettings
from gateway.errors import JournalFull
from gateway.identity import DpsProvider, device_id_for
from gateway.secret import Secret
from simulators.hub import HubEmulator, HubFacts
from tests.gateway.cloud_fixtures import ca_pem, facts, hub

__all__ = ["facts", "hub"]  # fixtures used by name


class FullCache:
    """An assignment cache on a full disk: reads work, writes fail."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname

    def get_assignment(self, device_id: str) -> str | None:
        return self.hostname

    def put_assignment(self, device_id: str, hostname: str) -> None:
        raise JournalFull("journal: database or disk is full (0 bytes free)", 0)

    def drop_assignment(self, device_id: str) -> None:
        raise JournalFull("journal: database or disk is full (0 bytes free)", 0)


async def test_dps_works_while_the_assignment_cannot_be_cached(
    hub: HubEmulator, facts: HubFacts
) -> None:
    settings = DpsSettings(facts.dps_host, facts.dps_id_scope, Secret(facts.group_enrollment_key))
    device_id = device_id_for(bytes.fromhex("c0ffee02"), "sim-b")
    stale = FullCache("stale-hub.example")
    provider = DpsProvider(settings, ca_pem=ca_pem(facts), cache=stale, timeout=10)
    cached = await provider.credentials(device_id, uid="c0ffee02")
    assert cached.hostname == "stale-hub.example"  # the cache is read as before
    provider.forget(device_id)  # the hub refused it: the drop fails on the full disk...
    creds = await provider.credentials(device_id, uid="c0ffee02")
    assert creds.hostname == facts.hostname  # ...and DPS is asked, not the stale entry
    assert hub.device(device_id).device_id == device_id

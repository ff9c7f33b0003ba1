"""Lab(grouped_sims=True): one `sim --count N` process per model, as the scale benchmark uses."""

from __future__ import annotations

from pathlib import Path

from gateway.lab import Lab
from gateway.naming import device_id_for
from tests.gateway.e2e import next_host, start_gateway, wait_hub


async def test_grouped_sims_come_online_under_one_process_per_model(tmp_path: Path) -> None:
    models = ["vmcu-f4", "vmcu-l0", "vmcu-f4"]
    async with Lab(tmp_path, next_host(), models, grouped_sims=True) as lab:
        assert [g.model for g in lab.groups] == ["vmcu-f4", "vmcu-l0"]
        assert [g.count for g in lab.groups] == [2, 1]
        assert [s.model for s in lab.sims] == models
        assert len({s.uid for s in lab.sims}) == 3
        assert all(s.pty and s.link.is_symlink() for s in lab.sims)
        run = await start_gateway(lab)
        try:
            ids = [device_id_for(bytes.fromhex(s.uid), s.model) for s in lab.sims]
            await wait_hub(lab, lambda s: all(s.hub.is_connected(d) for d in ids), within=60)
        finally:
            await run.halt()
        procs = [g.proc for g in lab.groups]
    assert all(p is not None and p.returncode is not None for p in procs)

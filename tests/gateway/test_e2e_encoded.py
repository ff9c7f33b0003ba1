"""End to end: the gateway sends the first update compressed and the next one as a delta
against the image it flashed, through the hub, HTTPS and a simulator on a pty (§17)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.e2e import device_ids, firmware_of, reported, running_lab, set_desired, wait_hub


def _code_like(seed: int, n: int) -> bytes:
    # Machine code reuses a limited vocabulary of instructions: compressible like firmware.
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(700)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


# The same twin-driven updates reach the C reference bootloader's decoders (issue 21):
# the host build and the Cortex-M3 build in QEMU decode the streams themselves.
@pytest.mark.parametrize("impl", ["python", "c", "qemu"])
async def test_compressed_then_delta_through_the_hub(tmp_path: Path, impl: str) -> None:
    v2 = _code_like(1, 96 * 1024)
    v3 = v2[:40_000] + b"a small code change" + v2[40_000:]
    sim_args = ("--baud", "460800", "--impl", impl)
    async with running_lab(tmp_path, ["vmcu-f4"], sim_args=sim_args) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: all("mcu" in reported(s, a.device_id)
                                          for a in run.gateway.agents.values())
                       and len(run.gateway.agents) == 1, within=60)  # fmt: skip
        (device,) = device_ids(run)
        # The simulator process is the build asked for (the C ports exec their binary).
        proc = lab.sims[0].proc
        assert proc is not None
        exe = os.path.basename(os.readlink(f"/proc/{proc.pid}/exe"))
        assert exe.startswith({"python": "python", "c": "bl-host", "qemu": "qemu-system-arm"}[impl])

        async def update(version: str, body: bytes) -> dict[str, Any]:
            rel = lab.release(version, "vmcu-f4", size=len(body), body=body)
            await asyncio.to_thread(set_desired, lab, device, rel.desired())

            def current(s: Any) -> bool:
                fw = firmware_of(s, device)
                return bool(
                    fw.get("currentFwVersion") == version and fw.get("fwUpdateStatus") == "current"
                )

            await wait_hub(lab, current, within=90)
            return dict(firmware_of(lab.hub.call(lambda s: s), device))  # type: ignore[union-attr]

        first = await update("2.0.0", v2)
        assert first["transferEncoding"] == "compressed"
        assert first["payloadBytes"] < 0.8 * first["bytesWritten"]
        second = await update("3.0.0", v3)
        assert second["transferEncoding"] == "delta"
        assert second["payloadBytes"] < 0.05 * second["bytesWritten"]

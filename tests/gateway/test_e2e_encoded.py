"""End to end: the gateway sends the first update compressed and the next one as a delta
against the image it flashed, through the hub, HTTPS and a simulator on a pty (§17)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from tests.gateway.e2e import device_ids, firmware_of, reported, running_lab, set_desired, wait_hub


def _code_like(seed: int, n: int) -> bytes:
    # Machine code reuses a limited vocabulary of instructions: compressible like firmware.
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(700)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


async def test_compressed_then_delta_through_the_hub(tmp_path: Path) -> None:
    v2 = _code_like(1, 96 * 1024)
    v3 = v2[:40_000] + b"a small code change" + v2[40_000:]
    async with running_lab(tmp_path, ["vmcu-f4"], sim_args=("--baud", "460800")) as run:
        lab = run.lab
        await wait_hub(lab, lambda s: all("mcu" in reported(s, a.device_id)
                                          for a in run.gateway.agents.values())
                       and len(run.gateway.agents) == 1, within=60)  # fmt: skip
        (device,) = device_ids(run)

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

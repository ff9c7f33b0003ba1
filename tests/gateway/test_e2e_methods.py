"""End to end: direct methods through the service SDK, and ports that are not bootloaders."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path
from typing import Any

from tests.gateway.e2e import device_ids, firmware_of, reported, running_lab, set_desired, wait_hub


def _invoke(lab: Any, device_id: str, method: str, payload: Any = None) -> Any:
    from azure.iot.hub.models import CloudToDeviceMethod

    request = CloudToDeviceMethod(
        method_name=method, payload=payload or {}, response_timeout_in_seconds=20
    )
    return lab.registry().invoke_device_method(device_id, request)


async def test_methods_and_a_port_that_is_not_a_bootloader(tmp_path: Path) -> None:
    # A silent pty among the MCU ports: it must be reported and skipped.
    (tmp_path / "ports").mkdir(parents=True)
    master, slave = os.openpty()
    tty.setraw(slave)
    (tmp_path / "ports" / "mcu-999").symlink_to(os.ttyname(slave))
    try:
        async with running_lab(tmp_path, ["vmcu-f4"], sim_args=("--baud", "230400")) as run:
            lab = run.lab

            def methods_ready(s: Any) -> bool:
                # Connected is not enough: IoT Hub answers 404 until the device has
                # subscribed to methods, which the SDK does just after connecting.
                agents = list(run.gateway.agents.values())
                if len(agents) != 1 or not agents[0].link.connected:
                    return False
                session = s.hub.sessions.get(agents[0].device_id)
                return session is not None and session.subscribed(
                    "$iothub/methods/POST/getInfo/?$rid=1"
                )

            await wait_hub(lab, methods_ready, within=60)
            (device,) = device_ids(run)
            assert run.gateway.scans >= 1
            silent = str(tmp_path / "ports" / "mcu-999")

            def silent_port_reported(s: Any) -> Any:
                ports = reported(s, run.gateway.config.gateway.device_id).get("silentPorts")
                return ports and [p for p in ports if p["port"] == silent]

            (entry,) = await wait_hub(lab, silent_port_reported, within=30)
            assert "no bootloader answered" in entry["reason"]
            assert "mcugw" in entry["reason"]

            info = await asyncio.to_thread(_invoke, lab, device, "getInfo")
            assert info.status == 200
            assert info.payload["model"] == "vmcu-f4"
            assert info.payload["running_version"] == "1.0.0"

            reboot = await asyncio.to_thread(_invoke, lab, device, "reboot")
            assert reboot.status == 200

            nothing = await asyncio.to_thread(_invoke, lab, device, "abortUpdate")
            assert nothing.status == 404

            rel = lab.release("2.0.0", "vmcu-f4", size=160 * 1024)
            await asyncio.to_thread(set_desired, lab, device, rel.desired())

            def applying(s: Any) -> bool:
                fw = firmware_of(s, device)
                return bool(
                    fw.get("fwUpdateStatus") == "applying" and fw.get("bytesWritten", 0) > 0
                )

            await wait_hub(lab, applying, within=60)
            busy = await asyncio.to_thread(_invoke, lab, device, "reboot")
            assert busy.status == 409
            aborted = await asyncio.to_thread(_invoke, lab, device, "abortUpdate")
            assert aborted.status == 200
            await wait_hub(
                lab,
                lambda s: (firmware_of(s, device).get("error") or {}).get("code") == "ABORTED",
                within=30,
            )
            fw = firmware_of(lab.hub.call(lambda s: s), device)  # type: ignore[union-attr]
            assert fw["currentFwVersion"] == "1.0.0"
            info = await asyncio.to_thread(_invoke, lab, device, "getInfo")
            assert info.payload["running_version"] == "1.0.0"
    finally:
        os.close(master)
        os.close(slave)

"""The ``mcuboot`` driver against the ecosystem's own hosts, on the same paced simulator.

For each baud rate and app command set (``stock``: Zephyr's smp_svr sample, no
mcumgr params; ``full``: params reported), a fresh ``mcu-gateway sim --bootloader
mcuboot`` serves one 64 KiB image install three ways, timed from the start of
the host to the moment the device runs the new image confirmed:

* ``mcu-gateway``: ``driver.install()`` (identify, upload, check, test, reset, confirm);
* ``smpclient``: ``SMPClient.upload()``, ``ImageStatesWrite(hash)`` (test), ``ResetWrite``;
* ``smpmgr``: ``smpmgr --port P upgrade --slot 1 FILE`` (a process, as a user runs it).

After a peer's reset the same ``image state`` poll (smpclient, 50 ms apart) waits
for the app's confirm, so the swap and confirm cost the same for all three.

    python -m bench.mcuboot_peers [--bauds 115200,921600] [--size 64K] [--sets stock,full]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from smpclient import SMPClient
from smpclient.generics import success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import ResetWrite
from smpclient.transport.serial import SMPSerialTransport

from protocols import registry
from protocols.driver import DriverOptions, Image
from protocols.mcuboot.image import build_image, parse_image

UID = "0102030405060708"
TOOLS = ("mcu-gateway", "smpclient", "smpmgr")


@contextlib.contextmanager
def running_sim(baud: int, commands: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="mcuboot-peers-") as state:
        cmd = [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader", "mcuboot",
               "--state", state, "--baud", str(baud),
               "--fault", f"commands={commands}"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("PTY "):
                raise RuntimeError(f"simulator did not announce a pty: {line!r}")
            yield line.split(" ", 1)[1]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


async def _confirmed(port: str, digest: bytes, within: float = 60.0) -> None:
    """Poll ``image state`` until the primary slot runs ``digest`` confirmed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        client = SMPClient(SMPSerialTransport(), port, timeout_s=0.5)
        try:
            await client.connect(5.0)
            r = await client.request(ImageStatesRead())
            if success(r) and any(
                i.slot == 0 and i.hash == digest and i.confirmed for i in r.images
            ):
                return
        except (TimeoutError, OSError):
            pass  # rebooting
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
        await asyncio.sleep(0.05)
    raise RuntimeError("the device did not run the new image confirmed in time")


async def _ours(port: str, baud: int, data: bytes) -> float:
    image = Image(data, "2.0.0", hashlib.sha256(data).hexdigest())
    options = DriverOptions(baud=baud, confirm_timeout_s=30.0, extra={"uid": UID})
    t0 = time.monotonic()
    async with registry.open_driver(port, registry.get("mcuboot"), options) as driver:
        result = await driver.install(image)
    if not result.ok:
        raise RuntimeError(f"install ended {result.outcome}")
    return time.monotonic() - t0


async def _smpclient(port: str, data: bytes) -> float:
    digest = parse_image(data).hash
    t0 = time.monotonic()
    client = SMPClient(SMPSerialTransport(), port, timeout_s=2.0)
    await client.connect(10.0)
    try:
        async for _ in client.upload(data):
            pass
        if not success(await client.request(ImageStatesWrite(hash=digest))):
            raise RuntimeError("smpclient: image test refused")
        await client.request(ResetWrite())
    finally:
        await client.disconnect()
    await _confirmed(port, digest)
    return time.monotonic() - t0


async def _smpmgr(port: str, data: bytes, path: Path) -> float:
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smpmgr", "--port", port, "upgrade", "--slot", "1", str(path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"smpmgr failed: {out.decode(errors='replace')[-300:]}")
    await _confirmed(port, parse_image(data).hash)
    return time.monotonic() - t0


def run_one(tool: str, baud: int, commands: str, data: bytes, tmp: Path) -> float:
    with running_sim(baud, commands) as port:
        if tool == "mcu-gateway":
            return asyncio.run(_ours(port, baud, data))
        if tool == "smpclient":
            return asyncio.run(_smpclient(port, data))
        path = tmp / "app.signed.bin"
        path.write_bytes(data)
        return asyncio.run(_smpmgr(port, data, path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bauds", default="115200,921600")
    parser.add_argument("--size", default="64K")
    parser.add_argument("--sets", default="stock,full", help="app command sets")
    args = parser.parse_args(argv)
    size = int(args.size.rstrip("kK")) * (1024 if args.size[-1] in "kK" else 1)
    data = build_image(random.Random(size).randbytes(size), "2.0.0")
    print("| baud | app | host | install s | vs mcu-gateway |")
    print("|------|-----|------|-----------|----------------|")
    with tempfile.TemporaryDirectory(prefix="mcuboot-peers-") as tmp:
        for baud in (int(b) for b in args.bauds.split(",")):
            for commands in args.sets.split(","):
                ours = 0.0
                for tool in TOOLS:
                    seconds = run_one(tool, baud, commands, data, Path(tmp))
                    ours = ours or seconds
                    print(f"| {baud} | {commands} | {tool} | {seconds:.2f} | "
                          f"{seconds / ours:.2f}x |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

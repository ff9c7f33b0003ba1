"""``mcu-gateway sim --pty --bootloader mcuboot``: options and start-up.

Shares the ``sim`` command's options (--state, --uid, --baud, --app-version,
--model, --flash-scale, --turnaround-ms) and reads its own ``--fault`` specs::

    crash-on-boot=VER   the app of version VER crashes after booting (watchdog reset,
                        MCUboot reverts); repeatable
    no-confirm          the app never confirms a trial image
    slot-size=N         bytes per slot (default 0x110000; multiple of 4096)
    buf-size=N          SMP reassembly buffer the app reports (default 1024)
    no-banner           do not print Zephyr's boot banner on the console
    corrupt=RATE[:DIR]  flip a bit in a byte with probability RATE (DIR rx|tx|both)
    drop=RATE[:DIR]     lose a byte with probability RATE
    seed=N              RNG seed for corrupt/drop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from protocols.mcuboot.image import build_image, parse_version
from simulators.mcu.link import LinkFaults
from simulators.mcu.mcuboot.device import DeviceConfig, McubootDevice
from simulators.mcu.mcuboot.flash import PRIMARY, SlotFlash
from simulators.mcu.mcuboot.serve import serve
from simulators.mcu.mcuboot.server import ServerConfig
from simulators.mcu.options import LinkFaultSpec, SimOptions
from simulators.mcu.options import parse_faults as parse_link_faults

DEFAULT_SLOT = 0x110000  # 1 MiB + 64 KiB: room for the benches' 1 MiB image
DEFAULT_BOARD = "vmcu_nrf52840"
FACTORY_BODY = 8 * 1024


class SimError(ValueError):
    """A bad option; the CLI prints it as one line."""


@dataclass(frozen=True)
class Faults:
    crash_versions: frozenset[str] = frozenset()
    no_confirm: bool = False
    slot_size: int = DEFAULT_SLOT
    buf_size: int = 1024
    banner: bool = True
    link: LinkFaultSpec = field(default_factory=LinkFaultSpec)


def parse_faults(specs: list[str]) -> Faults:
    faults = Faults()
    for spec in specs:
        key, _, value = spec.partition("=")
        try:
            if key in ("corrupt", "drop", "seed"):
                link = parse_link_faults([spec], SimOptions(link=faults.link)).link
                faults = replace(faults, link=link)
            elif key == "crash-on-boot" and value:
                parse_version(value)
                faults = replace(faults, crash_versions=faults.crash_versions | {value})
            elif key == "no-confirm" and not value:
                faults = replace(faults, no_confirm=True)
            elif key == "no-banner" and not value:
                faults = replace(faults, banner=False)
            elif key == "slot-size" and value:
                faults = replace(faults, slot_size=int(value, 0))
            elif key == "buf-size" and value:
                size = int(value, 0)
                if not 64 <= size <= 65535:
                    raise SimError(f"--fault {spec!r}: buf-size must be 64..65535")
                faults = replace(faults, buf_size=size)
            else:
                raise SimError(
                    f"--fault {spec!r} is not an mcuboot simulator fault "
                    "(crash-on-boot=VER, no-confirm, no-banner, slot-size=N, buf-size=N, "
                    "corrupt=RATE, drop=RATE, seed=N)"
                )
        except ValueError as exc:
            if isinstance(exc, SimError):
                raise
            raise SimError(f"--fault {spec!r}: {exc}") from None
    return faults


def _uid(state: Path, given: str | None, index: int = 0) -> bytes:
    """The board's hardware id: --uid (the Nth board adds N to its last byte), else persisted."""
    path = state / "uid"
    if given:
        try:
            uid = bytes.fromhex(given)
        except ValueError:
            raise SimError(f"--uid {given!r} is not hex") from None
        if not 1 <= len(uid) <= 32:
            raise SimError("--uid must be 1 to 32 bytes")
        if index:
            uid = uid[:-1] + bytes([(uid[-1] + index) % 256])
        path.write_text(uid.hex())
        return uid
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    uid = os.urandom(8)
    path.write_text(uid.hex())
    return uid


def open_flash(state: Path, faults: Faults, app_version: str) -> SlotFlash:
    try:
        flash = SlotFlash(state / "flash.bin", faults.slot_size)
    except ValueError as exc:
        raise SimError(str(exc)) from None
    if flash.fresh:
        body = bytes((i * 7 + 3) & 0xFF for i in range(FACTORY_BODY))
        try:
            flash.write(PRIMARY, 0, build_image(body, app_version))
        except ValueError as exc:
            flash.close()
            raise SimError(f"--app-version: {exc}") from None
    return flash


def config(args: argparse.Namespace, faults: Faults, uid: bytes) -> DeviceConfig:
    scale = float(getattr(args, "flash_scale", 1.0) or 1.0)
    turnaround = getattr(args, "turnaround_ms", None)
    server = ServerConfig(
        uid=uid,
        board=getattr(args, "model", None) or DEFAULT_BOARD,
        buf_size=faults.buf_size,
        erase_s_per_sector=0.02 * scale,
        program_s_per_kib=0.01 * scale,
        turnaround_s=0.001 if turnaround is None else turnaround / 1000,
    )
    return DeviceConfig(
        server=server,
        crash_versions=faults.crash_versions,
        no_confirm=faults.no_confirm,
        swap_s_per_sector=0.03 * scale,
        banner=faults.banner,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point from ``gateway.cli.sim``; raises :class:`SimError` on bad options."""
    count = int(getattr(args, "count", 1) or 1)
    if count < 1:
        raise SimError("--count must be at least 1")
    faults = parse_faults(list(args.fault))
    with contextlib.ExitStack() as stack:
        root: Path = args.state or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        boards: list[tuple[SlotFlash, DeviceConfig]] = []
        for i in range(count):
            state = root if count == 1 else root / f"mcu-{i:03d}"
            state.mkdir(parents=True, exist_ok=True)
            uid = _uid(state, args.uid, i)
            flash = open_flash(state, faults, args.app_version or "1.0.0")
            stack.callback(_close_quietly, flash)
            boards.append((flash, config(args, faults, uid)))
        link: Path | None = getattr(args, "link", None)
        links: list[Path] = []
        if link is not None:
            links = [link] if count == 1 else [
                link.with_name(f"{link.name}-{i:03d}") for i in range(count)
            ]  # fmt: skip

        async def main() -> int:
            now = asyncio.get_running_loop().time()
            devices = []
            for flash, cfg in boards:
                device = McubootDevice(flash, cfg, now, powered_up=True)
                device.poll(now)  # the app is up before the pty is announced
                devices.append(device)

            def announce(line: str) -> None:
                print(line, flush=True)

            return await serve(devices, args.baud, announce, lambda: LinkFaults(faults.link), links)

        return asyncio.run(main())


def _close_quietly(flash: SlotFlash) -> None:
    with contextlib.suppress(OSError):
        flash.close()

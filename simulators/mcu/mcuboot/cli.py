"""``mcu-gateway sim --pty --bootloader mcuboot``: options and start-up.

Shares the ``sim`` command's options (--state, --uid, --baud, --app-version,
--model, --flash-scale, --turnaround-ms) and reads its own ``--fault`` specs::

    crash-on-boot=VER   the app of version VER crashes after booting (watchdog reset,
                        MCUboot reverts); repeatable
    no-confirm          the app never confirms a trial image
    slot-size=N         bytes per slot (default 0x110000; multiple of 4096)
    buf-size=N          SMP reassembly buffer the app reports and enforces (default 256 on
                        the stock command set, Zephyr's UART MTU; 1024 on the full one)
    no-banner           do not print Zephyr's boot banner on the console
    commands=SET        the app's SMP commands: stock (default; Zephyr's smp_svr sample
                        with overlay-serial.conf) or full (also os info with the
                        hardware-id hook, mcumgr params, bootloader info, slot info)
    recovery            MCUboot's serial recovery at power-on (recovery button held)
    images=N            1 (default) or 2 images (nRF5340 style: app and network core)
    key=PATH            MCUboot checks signatures with this imgtool key (repeatable);
                        without one it checks the SHA256 TLV only
    reset-upload-at=N   the board resets (once) when an upload first reaches offset N
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
from simulators.mcu.mcuboot.flash import PRIMARY, SlotFlash, area
from simulators.mcu.mcuboot.serve import serve
from simulators.mcu.mcuboot.server import Commands, ServerConfig
from simulators.mcu.mcuboot.validate import TrustedKey, sign_image
from simulators.mcu.options import LinkFaultSpec, SimOptions
from simulators.mcu.options import parse_faults as parse_link_faults

DEFAULT_SLOT = 0x110000  # 1 MiB + 64 KiB: room for the benches' 1 MiB image
DEFAULT_BOARD = "vmcu_nrf52840"
#: A stock build's largest SMP frame: CONFIG_MCUMGR_TRANSPORT_UART_MTU defaults to 256
#: (subsys/mgmt/mcumgr/transport/Kconfig.uart), under NETBUF_SIZE's default of 384.
STOCK_MTU = 256
FACTORY_BODY = 8 * 1024


class SimError(ValueError):
    """A bad option; the CLI prints it as one line."""


@dataclass(frozen=True)
class Faults:
    crash_versions: frozenset[str] = frozenset()
    no_confirm: bool = False
    slot_size: int = DEFAULT_SLOT
    buf_size: int | None = None  # None: 256 on a stock build, 1024 on the full one
    banner: bool = True
    link: LinkFaultSpec = field(default_factory=LinkFaultSpec)
    commands: Commands = Commands.STOCK
    recovery: bool = False
    images: int = 1
    keys: tuple[Path, ...] = ()
    reset_upload_at: int | None = None


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
            elif key == "commands" and value:
                try:
                    faults = replace(faults, commands=Commands(value))
                except ValueError:
                    raise SimError(f"--fault {spec!r}: commands is stock or full") from None
            elif key == "recovery" and not value:
                faults = replace(faults, recovery=True)
            elif key == "images" and value:
                if value not in ("1", "2"):
                    raise SimError(f"--fault {spec!r}: images is 1 or 2")
                faults = replace(faults, images=int(value))
            elif key == "reset-upload-at" and value:
                faults = replace(faults, reset_upload_at=int(value, 0))
            elif key == "key" and value:
                faults = replace(faults, keys=(*faults.keys, Path(value)))
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
                    "(crash-on-boot=VER, no-confirm, no-banner, commands=stock|full, recovery, "
                    "images=N, key=PATH, reset-upload-at=N, slot-size=N, buf-size=N, "
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


def load_keys(faults: Faults) -> tuple[TrustedKey, ...]:
    keys = []
    for path in faults.keys:
        try:
            keys.append(TrustedKey.load(path))
        except (OSError, ValueError) as exc:
            raise SimError(f"--fault key={path}: {exc}") from None
    return tuple(keys)


def open_flash(state: Path, faults: Faults, app_version: str) -> SlotFlash:
    try:
        flash = SlotFlash(state / "flash.bin", faults.slot_size, faults.images)
    except ValueError as exc:
        raise SimError(str(exc)) from None
    if flash.fresh:
        # The factory images, as the board leaves the programmer: signed with the
        # first key when MCUboot checks signatures.
        signer = faults.keys[0] if faults.keys else None
        for image in range(faults.images):
            body = bytes((i * 7 + 3 + image) & 0xFF for i in range(FACTORY_BODY))
            try:
                data = build_image(body, app_version)
                if signer is not None:
                    data = sign_image(data, signer)
                flash.load(area(image, PRIMARY), data)
            except (OSError, ValueError) as exc:
                flash.close()
                raise SimError(f"factory image: {exc}") from None
    return flash


def config(
    args: argparse.Namespace, faults: Faults, uid: bytes, keys: tuple[TrustedKey, ...] = ()
) -> DeviceConfig:
    scale = float(getattr(args, "flash_scale", 1.0) or 1.0)
    turnaround = getattr(args, "turnaround_ms", None)
    server = ServerConfig(
        uid=uid,
        board=getattr(args, "model", None) or DEFAULT_BOARD,
        buf_size=faults.buf_size or (STOCK_MTU if faults.commands is Commands.STOCK else 1024),
        erase_s_per_sector=0.02 * scale,
        program_s_per_kib=0.01 * scale,
        turnaround_s=0.001 if turnaround is None else turnaround / 1000,
        commands=faults.commands,
    )
    return DeviceConfig(
        server=server,
        crash_versions=faults.crash_versions,
        no_confirm=faults.no_confirm,
        swap_s_per_sector=0.03 * scale,
        banner=faults.banner,
        keys=keys,
        recovery=faults.recovery,
        reset_upload_at=faults.reset_upload_at,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point from ``gateway.cli.sim``; raises :class:`SimError` on bad options."""
    count = int(getattr(args, "count", 1) or 1)
    if count < 1:
        raise SimError("--count must be at least 1")
    faults = parse_faults(list(args.fault))
    keys = load_keys(faults)
    with contextlib.ExitStack() as stack:
        root: Path = args.state or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        boards: list[tuple[SlotFlash, DeviceConfig]] = []
        for i in range(count):
            state = root if count == 1 else root / f"mcu-{i:03d}"
            state.mkdir(parents=True, exist_ok=True)
            uid = _uid(state, args.uid, i)
            flash = open_flash(state, faults, args.app_version or "1.0.0")
            stack.callback(_close_quietly, flash)
            boards.append((flash, config(args, faults, uid, keys)))
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

"""The MCUboot simulator: boot/swap/revert logic, the app over time, its SMP server,
and third-party SMP hosts (smpclient, smpmgr) driving it over a real pty."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from smpclient import SMPClient
from smpclient.generics import error, success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import (
    MCUMgrParametersRead,
    OSApplicationInfoRead,
    ResetWrite,
)
from smpclient.transport.serial import SMPSerialTransport

from protocols.mcuboot import client as smp
from protocols.mcuboot.image import build_image, parse_image
from simulators.mcu import launch
from simulators.mcu.mcuboot.boot import (
    BootResult,
    SwapType,
    boot,
    boot_steps,
    slot_image,
    swap_type,
)
from simulators.mcu.mcuboot.device import DeviceConfig, McubootDevice, Run
from simulators.mcu.mcuboot.flash import PRIMARY, SECONDARY, FlashError, SlotFlash, area
from simulators.mcu.mcuboot.recovery import RecoveryConfig, RecoveryServer
from simulators.mcu.mcuboot.server import Commands, ServerConfig, SmpServer
from simulators.mcu.mcuboot.validate import TrustedKey
from tests.mcuboot_tools import imgtool_keygen, imgtool_sign, imgtool_sign_with
from tests.sim_harness import SimProcess, running_sim

SLOT = 0x40000


@pytest.fixture(autouse=True)
def _close_flashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every SlotFlash a test opens is closed after it (the tests model power cycles)."""
    opened: list[SlotFlash] = []
    real_init = SlotFlash.__init__

    def init(self: SlotFlash, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(SlotFlash, "__init__", init)
    yield
    for flash in opened:
        flash.close()
SIM = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1")
FULL = (*SIM, "--fault", "commands=full")


def _flash(tmp: Path, version: str = "1.0.0") -> SlotFlash:
    flash = SlotFlash(tmp / "flash.bin", SLOT)
    flash.load(PRIMARY, build_image(b"\x11" * 3000, version))
    return flash


def _stage(flash: SlotFlash, image: bytes, *, permanent: bool = False) -> None:
    flash.load(SECONDARY, image)
    flash.write_magic(SECONDARY)
    if permanent:
        flash.write_image_ok(SECONDARY)


def _running(flash: SlotFlash) -> str:
    img = slot_image(flash, PRIMARY)
    assert img is not None
    return img.version


# --- MCUboot ------------------------------------------------------------------------------


def test_test_swap_boots_once_then_reverts_unless_confirmed(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(b"\x22" * 5000, "2.0.0"))
    assert swap_type(flash) is SwapType.TEST
    first = boot(flash)
    assert first.swap is SwapType.TEST
    assert first.image is not None and first.image.version == "2.0.0"
    assert swap_type(flash) is SwapType.REVERT  # on trial
    assert slot_image(flash, SECONDARY) is not None  # the way back is kept
    second = boot(flash)  # reset without a confirm
    assert second.swap is SwapType.REVERT
    assert _running(flash) == "1.0.0"
    assert flash.image_ok(PRIMARY)
    assert boot(flash).swap is SwapType.NONE  # and it stays reverted
    assert _running(flash) == "1.0.0"


def test_confirmed_trial_and_permanent_images_stay(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(b"\x22" * 5000, "2.0.0"))
    boot(flash)
    flash.write_image_ok(PRIMARY)  # the app confirms
    assert boot(flash).swap is SwapType.NONE
    assert _running(flash) == "2.0.0"
    _stage(flash, build_image(b"\x33" * 5000, "3.0.0"), permanent=True)
    assert boot(flash).swap is SwapType.PERM
    assert boot(flash).swap is SwapType.NONE
    assert _running(flash) == "3.0.0"


@pytest.mark.parametrize("damage", ["header-magic", "hash-tlv", "body"])
def test_an_image_with_bad_magic_or_hash_is_never_booted(tmp_path: Path, damage: str) -> None:
    flash = _flash(tmp_path)
    image = bytearray(build_image(b"\x22" * 5000, "2.0.0"))
    at = {"header-magic": 0, "hash-tlv": len(image) - 1, "body": 0x400}[damage]
    image[at] ^= 0x5A
    _stage(flash, bytes(image))
    result = boot(flash)
    assert result.swap is SwapType.FAIL
    assert "not valid" in " ".join(result.log)
    assert _running(flash) == "1.0.0"
    assert slot_image(flash, SECONDARY) is None  # erased, not retried at every boot
    assert swap_type(flash) is SwapType.NONE


def test_no_valid_primary_means_no_boot(tmp_path: Path) -> None:
    flash = SlotFlash(tmp_path / "flash.bin", SLOT)
    assert boot(flash).image is None


def test_flash_survives_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(b"\x22" * 5000, "2.0.0"))
    before = flash.slot(PRIMARY) + flash.slot(SECONDARY)
    flash.close()
    again = SlotFlash(tmp_path / "flash.bin", SLOT)
    assert not again.fresh
    assert again.slot(PRIMARY) + again.slot(SECONDARY) == before
    again.close()


# --- the board over time ------------------------------------------------------------------


def _device(flash: SlotFlash, **kw: object) -> McubootDevice:
    config = DeviceConfig(server=ServerConfig(uid=b"\x01\x02"), banner=False, **kw)  # type: ignore[arg-type]
    return McubootDevice(flash, config, now=0.0)


def _advance(device: McubootDevice, until: float) -> None:
    while (deadline := device.next_deadline()) is not None and deadline <= until:
        device.poll(deadline)
    device.poll(until)


def test_app_confirms_its_trial_by_itself(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(b"\x22" * 5000, "2.0.0"))
    device = _device(flash)
    assert device.run is Run.BOOTING
    device.receive(0.0, smp.SmpClient().send(smp.state_read(0)))
    assert device.poll(0.0) == []  # deaf while MCUboot swaps
    _advance(device, 5.0)
    assert device.run is Run.APP
    assert device.running_version == "2.0.0"
    assert swap_type(flash) is SwapType.NONE  # confirmed


def test_crashing_app_is_reverted_by_the_watchdog_reset(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(b"\x22" * 5000, "2.0.0"))
    device = _device(flash, crash_versions=frozenset({"2.0.0"}))
    _advance(device, 5.0)
    assert device.boots == 2
    assert device.running_version == "1.0.0"
    assert swap_type(flash) is SwapType.NONE


# --- SMP server semantics -----------------------------------------------------------------


def _call(server: SmpServer, packet: bytes) -> dict[str, object]:
    answer = server.handle(packet)
    assert answer is not None
    return smp.decode_packet(answer.packet)[1]


def test_upload_restarted_with_the_same_sha_resumes_and_wrong_offsets_are_corrected(
    tmp_path: Path,
) -> None:
    server = SmpServer(_flash(tmp_path), ServerConfig(uid=b"\x01"))
    image = build_image(os.urandom(3000), "2.0.0")
    sha = hashlib.sha256(image).digest()
    assert _call(server, smp.upload(1, 0, image[:1000], total=len(image), sha=sha)) == {"off": 1000}
    assert _call(server, smp.upload(2, 1000, image[1000:2000])) == {"off": 2000}
    # The host restarts: same image, offset 0 -> the device names where to go on.
    assert _call(server, smp.upload(3, 0, image[:1000], total=len(image), sha=sha)) == {"off": 2000}
    assert _call(server, smp.upload(4, 1500, image[1500:1600])) == {"off": 2000}
    end = _call(server, smp.upload(5, 2000, image[2000:]))
    assert end == {"off": len(image), "match": True}
    # Another image starts a new session.
    other = build_image(os.urandom(100), "3.0.0")
    digest = hashlib.sha256(other).digest()
    assert _call(server, smp.upload(6, 0, other[:50], total=len(other), sha=digest)) == {"off": 50}


def test_upload_of_a_raw_binary_is_refused(tmp_path: Path) -> None:
    server = SmpServer(_flash(tmp_path), ServerConfig(uid=b"\x01"))
    raw = os.urandom(1000)
    body = _call(server, smp.upload(1, 0, raw[:500], total=1000, sha=hashlib.sha256(raw).digest()))
    assert body == {"err": {"group": 1, "rc": 23}}  # INVALID_IMAGE_HEADER_MAGIC


def test_unknown_command_is_enotsup(tmp_path: Path) -> None:
    server = SmpServer(_flash(tmp_path), ServerConfig(uid=b"\x01"))
    packet = smp.encode_packet(0, 9, 0, 1, {})
    assert _call(server, packet) == {"rc": 8}
    payload = cbor2.dumps({"d": "hi"})
    echo = smp.SmpHeader(2, 1, 0, len(payload), 0, 2, 0).pack() + payload
    assert _call(server, echo) == {"r": "hi"}


# --- third-party hosts over the pty ----------------------------------------------------


async def _states(client: SMPClient) -> list[tuple[int, str, bool, bool, bool]]:
    r = await client.request(ImageStatesRead())
    assert success(r), r
    return [(i.slot, i.version, bool(i.active), bool(i.confirmed), bool(i.pending))
            for i in r.images]  # fmt: skip


async def _session(sim: SimProcess) -> SMPClient:
    client = SMPClient(SMPSerialTransport(), sim.port, timeout_s=1.0)
    await client.connect(10.0)
    return client


async def _after_reset(sim: SimProcess) -> list[tuple[int, str, bool, bool, bool]]:
    """State read once the device has reset (nothing pending) and its app answers."""
    for _ in range(40):
        client = await _session(sim)
        try:
            states = await _states(client)
        except TimeoutError:
            continue  # rebooting
        finally:
            await client.disconnect()
        if not any(pending for *_, pending in states):
            return states
    raise AssertionError("device did not come back after reset")


async def test_smpclient_upload_state_test_reset_confirm(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, os.urandom(30_000), "2.0.0")
    digest = parse_image(data).hash
    with running_sim(tmp_path / "mcu", *FULL, "--fault", "no-confirm") as sim:
        client = await _session(sim)
        try:
            offsets = [off async for off in client.upload(data)]
            assert offsets[-1] == len(data)
            states = await _states(client)
            assert states[1] == (1, "2.0.0", False, False, False)
            r = await client.request(ImageStatesWrite(hash=digest))
            assert success(r), r
            assert (await _states(client))[1][4] is True  # pending
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        # Booted on trial: active but not confirmed; the old image is the way back.
        assert await _after_reset(sim) == [
            (0, "2.0.0", True, False, False),
            (1, "1.0.0", False, True, False),
        ]
        client = await _session(sim)
        try:
            r = await client.request(ImageStatesWrite(confirm=True))
            assert success(r), r
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        assert (await _after_reset(sim))[0] == (0, "2.0.0", True, True, False)
        sim.kill()  # power cut after the confirm: the image stays
        sim.start()
        assert (await _after_reset(sim))[0] == (0, "2.0.0", True, True, False)


async def test_smpclient_cannot_get_a_tampered_image_booted(tmp_path: Path) -> None:
    data = bytearray(imgtool_sign(tmp_path, os.urandom(8_000), "2.0.0"))
    digest = parse_image(bytes(data)).hash
    data[0x300] ^= 0xFF  # the body no longer matches its SHA256 TLV
    with running_sim(tmp_path / "mcu", *FULL) as sim:
        client = await _session(sim)
        try:
            _ = [off async for off in client.upload(bytes(data))]
            r = await client.request(ImageStatesWrite(hash=digest))
            assert success(r), r  # the app's img_mgmt does not validate; MCUboot does
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        assert await _after_reset(sim) == [(0, "1.0.0", True, True, False)]


async def test_smpclient_sees_errors_as_a_device_would_send_them(tmp_path: Path) -> None:
    with running_sim(tmp_path / "mcu", *FULL) as sim:
        client = await _session(sim)
        try:
            r = await client.request(ImageStatesWrite(hash=b"\x00" * 32))
            assert error(r)
            assert r.err.rc == 8  # type: ignore[union-attr]  # HASH_NOT_FOUND
        finally:
            await client.disconnect()


def test_smpmgr_upgrade_and_state_read(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, os.urandom(10_000), "2.1.0")
    path = tmp_path / "app.signed.bin"
    path.write_bytes(data)
    smpmgr = [sys.executable, "-m", "smpmgr", "--timeout", "5"]
    env = {**os.environ, "COLUMNS": "200"}
    with running_sim(tmp_path / "mcu", *FULL) as sim:
        up = subprocess.run([*smpmgr, "--port", sim.port, "upgrade", "--slot", "1", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Upgrade complete" in up.stdout
        for _ in range(10):
            out = subprocess.run([*smpmgr, "--port", sim.port, "image", "state-read"],
                                 capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
            if out.returncode == 0:
                break
        assert "version='2.1.0'" in out.stdout
        assert parse_image(data).hash.hex().upper() in out.stdout


async def _identify_uid(port: str) -> str:
    from protocols import registry
    from protocols.driver import DriverOptions

    async with registry.open_driver(port, registry.get("mcuboot"), DriverOptions(baud=0)) as d:
        return (await d.identify()).uid


def test_count_and_link_serve_several_boards(tmp_path: Path) -> None:
    link = tmp_path / "ttyMCU"
    args = [*FULL, "--state", str(tmp_path / "s"), "--count", "2", "--link", str(link),
            "--uid", "a0b0c0d0"]  # fmt: skip
    with launch.running(args, count=2) as sim:
        uids = []
        for i, port in enumerate(sim.ports):
            assert os.path.realpath(tmp_path / f"ttyMCU-{i:03d}") == port
            uids.append(asyncio.run(_identify_uid(str(tmp_path / f"ttyMCU-{i:03d}"))))
        assert uids == ["a0b0c0d0", "a0b0c0d1"]
    assert not (tmp_path / "ttyMCU-000").exists()  # unplugged on exit


def test_sim_cli_refuses_unknown_faults(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader", "mcuboot",
         "--state", str(tmp_path), "--fault", "cut-at=50%"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0
    assert "not an mcuboot simulator fault" in out.stderr


# --- NOR flash ----------------------------------------------------------------------------


def test_flash_follows_nor_rules(tmp_path: Path) -> None:
    flash = SlotFlash(tmp_path / "flash.bin", SLOT)
    flash.program(SECONDARY, 0, bytes([0x0F] * 8))
    flash.program(SECONDARY, 0, bytes([0xF0] * 8))  # programming only clears bits
    assert flash.read(SECONDARY, 0, 8) == bytes(8)
    with pytest.raises(FlashError):
        flash.program(SECONDARY, 4, bytes(8))  # not at a write unit
    with pytest.raises(FlashError):
        flash.program(SECONDARY, 8, bytes(5))  # not whole write units
    with pytest.raises(FlashError):
        flash.erase(SECONDARY, 0x800, 0x1000)  # not a sector boundary
    flash.erase(SECONDARY, 0, 0x1000)
    assert flash.read(SECONDARY, 0, 8) == b"\xff" * 8


# --- swap-using-move, cut at every step -------------------------------------------------


def _boot_cut_after(tmp: Path, src: Path, steps: int, keys: tuple[TrustedKey, ...] = ()) -> bool:
    """Copy the flash file, run MCUboot for ``steps`` flash operations, cut the power
    (drop the copy's state), then boot again to the end. False if MCUboot finished first."""
    dst = tmp / f"cut-{steps}.bin"
    shutil.copyfile(src, dst)
    flash = SlotFlash(dst, SLOT)
    done = True
    it = boot_steps(flash, keys)
    for _ in range(steps):
        if next(it, StopIteration) is StopIteration:
            done = False
            break
    flash.close()
    return done


def _slots_after(path: Path, keys: tuple[TrustedKey, ...] = ()) -> tuple[str, str, BootResult]:
    flash = SlotFlash(path, SLOT)
    try:
        result = boot(flash, keys)
        primary = slot_image(flash, PRIMARY, check_hash=True)
        secondary = slot_image(flash, SECONDARY, check_hash=True)
        assert primary is not None and secondary is not None
        return primary.version, secondary.version, result
    finally:
        flash.close()


def test_a_power_cut_at_any_step_of_a_swap_resumes_to_the_same_result(tmp_path: Path) -> None:
    flash = _flash(tmp_path)  # 1.0.0, 3000 bytes: 1 sector
    _stage(flash, build_image(os.urandom(9000), "2.0.0"))  # 3 sectors
    flash.close()
    src = tmp_path / "flash.bin"
    cuts = 0
    for steps in range(1, 200):
        if not _boot_cut_after(tmp_path, src, steps):
            break
        cut = tmp_path / f"cut-{steps}.bin"
        primary, secondary, result = _slots_after(cut)
        assert (primary, secondary) == ("2.0.0", "1.0.0"), steps
        assert result.image is not None and result.image.version == "2.0.0"
        # Cut after the first status entry (scramble both trailers, status init, erase,
        # program + status): the next boot resumes from the status area.
        assert any("resuming" in line for line in result.log) == (steps >= 5), steps
        # The trial then reverts at the next reset, as an uninterrupted one does.
        again = SlotFlash(cut, SLOT)
        assert swap_type(again) is SwapType.REVERT
        again.close()
        cuts += 1
    assert cuts > 20  # every erase, program and status write of the swap was a cut point


def test_a_power_cut_at_any_step_of_a_revert_resumes(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    _stage(flash, build_image(os.urandom(9000), "2.0.0"))
    assert boot(flash).swap is SwapType.TEST  # now on trial: the next boot reverts
    flash.close()
    src = tmp_path / "flash.bin"
    for steps in range(1, 200):
        if not _boot_cut_after(tmp_path, src, steps):
            break
        primary, secondary, result = _slots_after(tmp_path / f"cut-{steps}.bin")
        assert (primary, secondary) == ("1.0.0", "2.0.0"), steps
        assert result.image is not None and result.image.version == "1.0.0"
    assert steps > 20


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_only_images_signed_with_the_trusted_key_boot(tmp_path: Path, kind: str) -> None:
    trusted, other = imgtool_keygen(tmp_path, "trusted", kind), imgtool_keygen(tmp_path, "other")
    keys = (TrustedKey.load(trusted),)
    flash = SlotFlash(tmp_path / "flash.bin", SLOT)
    flash.load(PRIMARY, imgtool_sign_with(tmp_path, b"\x11" * 3000, "1.0.0", trusted))
    for key, version in ((other, "2.0.0"), (None, "2.0.1")):
        _stage(flash, imgtool_sign_with(tmp_path, os.urandom(5000), version, key))
        result = boot(flash, keys)
        assert result.swap is SwapType.FAIL, version
        assert _running(flash) == "1.0.0"
        assert slot_image(flash, SECONDARY) is None  # erased, as boot_scramble_slot does
    _stage(flash, imgtool_sign_with(tmp_path, os.urandom(5000), "2.1.0", trusted))
    assert boot(flash, keys).swap is SwapType.TEST
    assert _running(flash) == "2.1.0"


# --- Zephyr's img_mgmt and stock builds ---------------------------------------------------


def test_a_chunk_after_a_reset_is_answered_with_offset_zero(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    image = build_image(os.urandom(3000), "2.0.0")
    sha = hashlib.sha256(image).digest()
    server = SmpServer(flash, ServerConfig(uid=b"\x01"))
    assert _call(server, smp.upload(1, 0, image[:1000], total=len(image), sha=sha)) == {"off": 1000}
    server = SmpServer(flash, ServerConfig(uid=b"\x01"))  # the board reset: RAM is gone
    assert _call(server, smp.upload(2, 1000, image[1000:2000])) == {"off": 0}


def test_stock_build_refuses_what_smp_svr_does_not_enable(tmp_path: Path) -> None:
    server = SmpServer(_flash(tmp_path), ServerConfig(uid=b"\x01", commands=Commands.STOCK))
    for packet in (smp.os_info_read(1, "i"), smp.params_read(2), smp.bootloader_info_read(3),
                   smp.slot_info_read(4)):  # fmt: skip
        assert _call(server, packet) == {"rc": 8}  # MGMT_ERR_ENOTSUP: no handler
    assert "images" in _call(server, smp.state_read(5))
    two = SlotFlash(tmp_path / "two.bin", SLOT, images=2)
    server = SmpServer(two, ServerConfig(uid=b"\x01", commands=Commands.STOCK))
    assert "images" in _call(server, smp.slot_info_read(6))  # default y with two images


async def test_smpclient_on_stock_zephyr_sees_enotsup_and_still_upgrades(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, os.urandom(12_000), "2.0.0")
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "no-confirm") as sim:
        client = await _session(sim)
        try:
            r = await client.request(OSApplicationInfoRead(format="i"))
            assert error(r) and r.rc == 8  # type: ignore[union-attr]
            r = await client.request(MCUMgrParametersRead())
            assert error(r) and r.rc == 8  # type: ignore[union-attr]
            _ = [off async for off in client.upload(data)]
            r = await client.request(ImageStatesWrite(hash=parse_image(data).hash))
            assert success(r), r
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        assert (await _after_reset(sim))[0] == (0, "2.0.0", True, False, False)


async def test_smpclient_wrongly_signed_image_is_refused_by_mcuboot(tmp_path: Path) -> None:
    trusted, other = imgtool_keygen(tmp_path, "trusted"), imgtool_keygen(tmp_path, "other")
    data = imgtool_sign_with(tmp_path, os.urandom(12_000), "2.0.0", other)
    with running_sim(tmp_path / "mcu", *FULL, "--fault", f"key={trusted}") as sim:
        client = await _session(sim)
        try:
            _ = [off async for off in client.upload(data)]
            r = await client.request(ImageStatesWrite(hash=parse_image(data).hash))
            assert success(r), r  # the app's img_mgmt does not check signatures; MCUboot does
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        assert await _after_reset(sim) == [(0, "1.0.0", True, True, False)]


# --- kill -9 mid-swap -----------------------------------------------------------------------


def _swap_progress(state: Path) -> tuple[int, bool]:
    """(status entries written in the primary trailer, copy_done) read from the flash file."""
    flash = SlotFlash(state / "flash.bin", 0x110000)
    try:
        written = sum(
            1 for e in range(flash.status_entries) if flash.status_entry(PRIMARY, e) != 0xFF
        )
        return written, flash.copy_done(PRIMARY)
    finally:
        flash.close()


async def test_kill_mid_swap_resumes_at_the_next_power_on(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, os.urandom(64_000), "2.0.0", slot_size=0x110000)
    state = tmp_path / "mcu"
    # A swap of 16 sectors at 0.03 s each: about 0.5 s to cut into. The full command set
    # reports a 1 KiB buffer, so smpclient uploads in large chunks.
    args = ("--bootloader", "mcuboot", "--baud", "0", "--fault", "no-confirm",
            "--fault", "commands=full")  # fmt: skip
    with running_sim(state, *args) as sim:
        client = await _session(sim)
        try:
            _ = [off async for off in client.upload(data)]
            assert success(await client.request(ImageStatesWrite(hash=parse_image(data).hash)))
            assert success(await client.request(ResetWrite()))
        finally:
            await client.disconnect()
        deadline = time.monotonic() + 30
        while (progress := _swap_progress(state))[0] < 8:
            assert time.monotonic() < deadline, progress
            await asyncio.sleep(0.02)  # polling the flash file for a condition, bounded
        sim.kill()
        written, copy_done = _swap_progress(state)
        assert written >= 8 and not copy_done  # cut in the middle of the swap
        sim.start()
        # It resumed: the new image runs on trial, the old one is the way back, intact.
        assert await _after_reset(sim) == [
            (0, "2.0.0", True, False, False),
            (1, "1.0.0", False, True, False),
        ]
    flash = SlotFlash(state / "flash.bin", 0x110000)
    try:
        assert flash.read(PRIMARY, 0, len(data)) == data
        old = slot_image(flash, SECONDARY, check_hash=True)
        assert old is not None and old.version == "1.0.0"
    finally:
        flash.close()


# --- serial recovery and two images -------------------------------------------------------


def test_recovery_serves_boot_serial_commands_only(tmp_path: Path) -> None:
    flash = _flash(tmp_path)
    server = RecoveryServer(flash, RecoveryConfig())
    listing = _call(server, smp.state_read(1))
    assert listing == {"images": [{"slot": 0, "hash": slot_image(flash, PRIMARY).hash,  # type: ignore[union-attr]
                                   "version": "1.0.0"}]}  # fmt: skip
    assert _call(server, smp.state_write(2, None, True)) == {"rc": 8}  # no confirm
    assert _call(server, smp.os_info_read(3, "i")) == {"rc": 8}
    assert _call(server, smp.params_read(4)) == {"rc": 8}
    image = build_image(os.urandom(3001), "2.0.0")
    assert _call(server, smp.upload(5, 0, image[:1001], total=len(image))) == {"rc": 0, "off": 1000}
    assert _call(server, smp.upload(6, 1200, image[1200:1300])) == {"rc": 0, "off": 1000}
    assert _call(server, smp.upload(7, 1000, image[1000:])) == {"rc": 0, "off": len(image)}
    assert _running(flash) == "2.0.0"  # written straight into the primary slot
    assert _call(server, smp.upload(8, 0, b"\x00" * 64, total=0x80000)) == {"rc": 3}  # EINVAL


def test_smpmgr_upgrades_through_serial_recovery(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, os.urandom(10_000), "2.1.0")
    path = tmp_path / "app.signed.bin"
    path.write_bytes(data)
    smpmgr = [sys.executable, "-m", "smpmgr", "--timeout", "5"]
    env = {**os.environ, "COLUMNS": "200"}
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "recovery") as sim:
        # --slot 0: the bootloader writes the primary slot; smpmgr marks nothing for test.
        up = subprocess.run([*smpmgr, "--port", sim.port, "upgrade", "--slot", "0", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        for _ in range(10):
            out = subprocess.run([*smpmgr, "--port", sim.port, "image", "state-read"],
                                 capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
            if out.returncode == 0 and "active=True" in out.stdout:
                break
        assert "version='2.1.0'" in out.stdout  # the app MCUboot booted after the reset
        assert "active=True" in out.stdout


def test_two_images_swap_each_on_its_own(tmp_path: Path) -> None:
    flash = SlotFlash(tmp_path / "two.bin", SLOT, images=2)
    flash.load(area(0, PRIMARY), build_image(b"\x11" * 3000, "1.0.0"))
    flash.load(area(1, PRIMARY), build_image(b"\x22" * 3000, "1.0.0"))
    server = SmpServer(flash, ServerConfig(uid=b"\x01", commands=Commands.STOCK))
    net = build_image(os.urandom(6000), "2.0.0")
    sha = hashlib.sha256(net).digest()
    body = smp.upload(1, 0, net, total=len(net), sha=sha, image=1)
    assert _call(server, body) == {"off": len(net), "match": True}
    images = _call(server, smp.state_write(2, parse_image(net).hash, False))["images"]
    assert [(i["image"], i["slot"], i["version"], i["pending"]) for i in images] == [  # type: ignore[index]
        (0, 0, "1.0.0", False), (1, 0, "1.0.0", False), (1, 1, "2.0.0", True),
    ]  # fmt: skip
    result = boot(flash)
    assert result.swaps == [SwapType.NONE, SwapType.TEST]
    assert [img.version for img in result.images if img] == ["1.0.0", "2.0.0"]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("commands=everything", "commands is stock or full"),
        ("images=3", "images is 1 or 2"),
        ("key=/nonexistent/key.pem", "key=/nonexistent/key.pem"),
    ],
)
def test_sim_cli_refuses_bad_model_options_in_one_line(
    tmp_path: Path, spec: str, says: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "--pty", "--bootloader", "mcuboot",
         "--state", str(tmp_path), "--fault", spec],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0
    assert says in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

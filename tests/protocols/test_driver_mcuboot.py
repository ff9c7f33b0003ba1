"""The mcuboot driver behind the seam: against the simulator on a real pty, and against
an in-process SMP peer that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols import registry
from protocols.driver import (
    Capability,
    DriverError,
    DriverOptions,
    Image,
    NoAnswer,
    Outcome,
    Progress,
    Safety,
    SlotState,
    Step,
)
from protocols.errors import TransportDisconnected
from protocols.mcuboot import client as smp
from protocols.mcuboot.driver import McubootDriver
from protocols.mcuboot.framing import ConsoleDecoder, Packet, encode
from protocols.mcuboot.image import build_image, parse_image
from simulators.mcu.mcuboot.flash import PRIMARY, SlotFlash
from simulators.mcu.mcuboot.server import ServerConfig, SmpServer
from tests.mcuboot_tools import as_image, imgtool_keygen, imgtool_sign_with, signed
from tests.sim_harness import running_sim

UID = "0a1b2c3d4e5f6071"
SIM = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1", "--uid", UID,
       "--fault", "commands=full")  # fmt: skip
#: What Zephyr's smp_svr sample enables: no os info, mcumgr params, bootloader or slot info.
STOCK = SIM[:-2]
OPTIONS = DriverOptions(baud=0, confirm_timeout_s=5.0)
SPEC = registry.get("mcuboot")


async def test_identify_then_install_confirmed(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0")
    events: list[Progress] = []
    with running_sim(tmp_path / "mcu", *SIM) as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            before = await driver.identify()
            result = await driver.install(image, events.append)
    assert before.driver == "mcuboot"
    assert before.uid == UID
    assert before.model == "vmcu_nrf52840"
    assert before.installed_version == "1.0.0"
    assert before.safety is Safety.AB_ROLLBACK
    assert before.capabilities == {
        Capability.AB_SLOTS, Capability.TRIAL_BOOT, Capability.ROLLBACK,
        Capability.RESUME, Capability.DEVICE_HASH,
    }  # fmt: skip
    assert before.capacity == 0x110000 - 3 * 0x1000  # 2 trailer sectors, 1 to move up
    assert result.outcome is Outcome.CONFIRMED
    assert result.bytes == len(image.data)
    assert result.resumed_from == 0
    assert result.running_version == "2.0.0"
    facts = result.facts
    assert facts.installed_version == "2.0.0"
    # mcumgr names images by their SHA256 TLV, which is what imgtool verify prints.
    assert facts.installed_sha256 == parse_image(image.data).hash.hex()
    assert [(s.index, s.version, s.state) for s in facts.slots] == [
        (0, "2.0.0", SlotState.CONFIRMED),
        (1, "1.0.0", SlotState.COMPLETE),
    ]
    assert facts.details["slot0"] == "active,confirmed,bootable"
    assert facts.details["slot1"] == "bootable"
    steps = [e.step for e in events]
    assert steps[0] is Step.CONNECT
    assert steps.index(Step.WRITE) < steps.index(Step.CHECK) < steps.index(Step.ACTIVATE)
    assert steps[-1] is Step.BOOT
    writes = [e.done for e in events if e.step is Step.WRITE]
    assert writes == sorted(writes)
    assert writes[-1] == len(image.data)
    assert result.wire_bytes_tx > len(image.data) * 4 // 3  # base64 on the wire


async def test_paced_link_takes_the_time_of_its_baud(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=12_000)
    args = [*SIM[:2], "--baud", "115200", *SIM[4:]]
    with running_sim(tmp_path / "mcu", *args) as sim:
        options = DriverOptions(baud=115200, confirm_timeout_s=5.0)
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            result = await driver.install(image)
    assert result.outcome is Outcome.CONFIRMED
    floor = result.wire_bytes_tx * 10 / 115200
    assert result.transfer_seconds >= floor * 0.9


async def test_app_crash_rolls_back(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0")
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "crash-on-boot=2.0.0") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            result = await driver.install(image)
    assert result.outcome is Outcome.ROLLED_BACK
    assert not result.ok
    assert result.facts.installed_version == "1.0.0"
    assert result.facts.slots[0].state is SlotState.CONFIRMED


async def test_unconfirmed_trial_blocks_the_next_upload_and_reverts_on_power_cycle(
    tmp_path: Path,
) -> None:
    options = DriverOptions(baud=0, confirm_timeout_s=0.5)
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "no-confirm") as sim:
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            result = await driver.install(signed(tmp_path, "2.0.0"))
            assert result.outcome is Outcome.UNCONFIRMED
            assert result.facts.slots[0].state is SlotState.TRIAL
            with pytest.raises(DriverError) as err:
                await driver.install(signed(tmp_path, "3.0.0", seed=4))
        assert err.value.code == "MCU_SMP_IMAGE_NO_FREE_SLOT"
        assert err.value.step is Step.WRITE
        sim.kill()  # power cut: the trial was never confirmed
        sim.start()
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            facts = await driver.identify()
    assert facts.installed_version == "1.0.0"


async def test_raw_binary_and_bad_images_are_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    raw = os.urandom(4096)
    good = signed(tmp_path, "2.0.0")
    tampered = bytearray(good.data)
    tampered[0x300] ^= 0xFF
    cases = {
        "not an MCUboot image": Image(raw, "2.0.0", hashlib.sha256(raw).hexdigest()),
        "does not match its contents": Image(
            bytes(tampered), "2.0.0", hashlib.sha256(tampered).hexdigest()
        ),
        "header says 2.0.0": Image(good.data, "2.1.0", good.sha256),
        "do not match their SHA-256": Image(good.data, "2.0.0", "00" * 32),
    }
    with running_sim(tmp_path / "mcu", *SIM) as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            assert isinstance(driver, McubootDriver)
            for reason, image in cases.items():
                with pytest.raises(DriverError, match=reason) as err:
                    await driver.install(image)
                assert err.value.code == "IMAGE_REJECTED"
            assert driver.link.tx == 0
            facts = await driver.identify()
    assert [s.version for s in facts.slots] == ["1.0.0"]


_KILLABLE = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from pathlib import Path
    from protocols import registry
    from protocols.driver import DriverOptions, Image
    data = Path(sys.argv[2]).read_bytes()
    image = Image(data, sys.argv[3], hashlib.sha256(data).hexdigest())
    def show(p):
        print(p.step.value, p.done, flush=True)
    async def main():
        opts = DriverOptions(baud=int(sys.argv[4]))
        async with registry.open_driver(sys.argv[1], registry.get("mcuboot"), opts) as d:
            await d.install(image, show)
    asyncio.run(main())
    """
)


def _run_until_written(port: str, image: Path, version: str, baud: int, at: int) -> None:
    """Run an install in another process and SIGKILL it once ``at`` bytes are written."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, port, str(image), version, str(baud)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    buf = b""
    try:
        while time.monotonic() < deadline:
            if not select.select([proc.stdout], [], [], deadline - time.monotonic())[0]:
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            lines = buf.decode().split()
            written = [
                int(n) for s, n in zip(lines[::2], lines[1::2], strict=False) if s == "write"
            ]
            if written and written[-1] >= at:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError("install did not get far enough in time")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, buf.decode()


async def test_upload_resumes_after_the_gateway_is_killed(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=60_000)
    path = tmp_path / "image.bin"
    path.write_bytes(image.data)
    baud = 460800
    args = [*SIM[:2], "--baud", str(baud), *SIM[4:]]
    with running_sim(tmp_path / "mcu", *args) as sim:
        _run_until_written(sim.port, path, "2.0.0", baud, len(image.data) // 3)
        options = DriverOptions(baud=baud, confirm_timeout_s=5.0)
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            result = await driver.install(image)
    assert result.outcome is Outcome.CONFIRMED
    assert len(image.data) // 3 <= result.resumed_from < len(image.data)
    assert result.bytes == len(image.data)
    assert result.details["bytes_sent"] == len(image.data) - result.resumed_from
    assert result.facts.installed_version == "2.0.0"


# --- misbehaving peers ------------------------------------------------------------------


Mutate = Callable[[smp.SmpHeader, bytes], bytes | None]


class PeerTransport:
    """A Transport whose far end is the simulator's SMP server, with a fault hook."""

    name = "peer://test"

    def __init__(
        self,
        tmp: Path,
        mutate: Mutate | None = None,
        swallow: Callable[[smp.SmpHeader, int], bool] | None = None,
    ) -> None:
        """``swallow(header, n)``: drop the request unseen (n counts requests so far)."""
        self.swallow = swallow or (lambda header, n: False)
        self.flash = SlotFlash(tmp / "flash.bin", 0x40000)
        self.flash.load(PRIMARY, build_image(b"\x01" * 4000, "1.0.0"))
        self.server = SmpServer(self.flash, ServerConfig(uid=bytes.fromhex(UID)))
        self.mutate = mutate or (lambda header, wire: wire)
        self._decoder = ConsoleDecoder()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.requests: list[smp.SmpHeader] = []
        self.packets: list[bytes] = []

    async def write(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if not isinstance(event, Packet):
                continue
            header = smp.SmpHeader.unpack(event.data)
            self.requests.append(header)
            self.packets.append(event.data)
            if self.swallow(header, len(self.requests)):
                continue
            answer = self.server.handle(event.data)
            if answer is None:
                continue
            wire = self.mutate(header, encode(answer.packet))
            if wire:
                self._queue.put_nowait(wire)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if not data:
            raise TransportDisconnected("peer closed")
        return data

    def set_baud(self, baud: int) -> None:
        pass

    async def close(self) -> None:
        self.flash.close()


FAST = DriverOptions(
    baud=0, confirm_timeout_s=1.0, extra={"response_timeout_s": 0.05, "erase_timeout_s": 0.1}
)


def _reseq(header: smp.SmpHeader, wire: bytes, delta: int) -> bytes:
    [packet] = [e.data for e in ConsoleDecoder().feed(wire) if isinstance(e, Packet)]
    h = smp.SmpHeader.unpack(packet)
    moved = smp.SmpHeader(h.op, h.version, h.flags, h.length, h.group, (h.seq + delta) & 0xFF,
                          h.command)  # fmt: skip
    return encode(moved.pack() + packet[smp.HEADER_SIZE :])


async def test_silence_and_garbage_are_no_answer(tmp_path: Path) -> None:
    silent = PeerTransport(tmp_path / "a", lambda h, w: None)
    with pytest.raises(NoAnswer):
        await McubootDriver(silent, FAST).identify()
    garbage = PeerTransport(tmp_path / "b", lambda h, w: b"\x55\xaa garbage \x06\x09!!\n" * 3)
    with pytest.raises(NoAnswer):
        await McubootDriver(garbage, FAST).identify()
    await silent.close()
    await garbage.close()


async def test_going_silent_mid_upload_is_a_timeout_after_retries(tmp_path: Path) -> None:
    def mute_upload(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        return None if (h.group, h.command) == (1, 1) else wire

    peer = PeerTransport(tmp_path, mute_upload)
    driver = McubootDriver(peer, FAST)
    with pytest.raises(DriverError) as err:
        await driver.install(signed(tmp_path, "2.0.0"))
    assert err.value.code == "MCU_TIMEOUT"
    assert err.value.step is Step.WRITE
    assert sum(1 for h in peer.requests if h.command == 1 and h.group == 1) == 4
    assert driver.link.retransmits == 3
    await peer.close()


async def test_answer_with_the_wrong_seq_is_a_protocol_error(tmp_path: Path) -> None:
    def skew_state(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        return _reseq(h, wire, 5) if (h.group, h.command) == (1, 0) else wire

    peer = PeerTransport(tmp_path, skew_state)
    with pytest.raises(DriverError) as err:
        await McubootDriver(peer, FAST).identify()
    assert err.value.code == "MCU_PROTOCOL_ERROR"
    assert "seq" in err.value.message
    await peer.close()


async def test_damaged_answers_are_retried_then_reported(tmp_path: Path) -> None:
    damaged = {"n": 0}

    def flip_once(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        if (h.group, h.command) == (1, 0) and damaged["n"] < 1:
            damaged["n"] += 1
            b = bytearray(wire)
            b[8] = ord("A") if b[8] != ord("A") else ord("B")
            return bytes(b)
        return wire

    peer = PeerTransport(tmp_path / "a", flip_once)
    driver = McubootDriver(peer, FAST)
    facts = await driver.identify()
    assert facts.installed_version == "1.0.0"
    assert driver.link.retransmits == 1

    def always(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        b = bytearray(wire)
        b[8] = ord("A") if b[8] != ord("A") else ord("B")
        return bytes(b) if (h.group, h.command) == (1, 0) else wire

    bad = PeerTransport(tmp_path / "b", always)
    with pytest.raises(DriverError) as err:
        await McubootDriver(bad, FAST).identify()
    assert err.value.code == "MCU_FRAME_ERROR"
    await peer.close()
    await bad.close()


async def test_smp_error_rc_is_a_named_code(tmp_path: Path) -> None:
    def refuse_test(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        if (h.group, h.command, h.op) == (1, 0, 2):
            return encode(smp.encode_packet(3, 1, 0, h.seq, {"err": {"group": 1, "rc": 28}}))
        return wire

    peer = PeerTransport(tmp_path, refuse_test)
    with pytest.raises(DriverError) as err:
        await McubootDriver(peer, FAST).install(signed(tmp_path, "2.0.0"))
    assert err.value.code == "MCU_SMP_IMAGE_IMAGE_ALREADY_PENDING"
    assert err.value.step is Step.ACTIVATE
    await peer.close()


async def test_uid_falls_back_to_the_configured_one(tmp_path: Path) -> None:
    # A device without the hardware-id hook refuses the custom os info letter.
    peer = PeerTransport(tmp_path / "a")
    peer.server = SmpServer(peer.flash, ServerConfig(uid=b"\x01", uid_format="Z"))
    with pytest.raises(DriverError) as err:
        await McubootDriver(peer, FAST).identify()
    assert err.value.code == "MCU_NO_UID"
    configured = DriverOptions(baud=0, extra={"uid": "CAFE01", "response_timeout_s": 0.05})
    facts = await McubootDriver(peer, configured).identify()
    assert facts.uid == "cafe01"
    await peer.close()


async def test_install_survives_a_noisy_link(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=30_000)
    noisy = ("--fault", "corrupt=0.0001", "--fault", "drop=0.00005", "--fault", "seed=5")
    extra = {"retries": 8, "response_timeout_s": 0.2}
    options = DriverOptions(baud=0, confirm_timeout_s=5.0, extra=extra)
    with running_sim(tmp_path / "mcu", *SIM, *noisy) as sim:
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            result = await driver.install(image)
    assert result.outcome is Outcome.CONFIRMED
    assert result.retransmits > 0, result
    assert result.facts.installed_sha256 == parse_image(image.data).hash.hex()


async def test_abort_drops_an_unfinished_upload(tmp_path: Path) -> None:
    peer = PeerTransport(tmp_path)
    image = signed(tmp_path, "2.0.0")
    digest = hashlib.sha256(image.data).digest()
    first = smp.upload(1, 0, image.data[:500], total=len(image.data), sha=digest)
    assert peer.server.handle(first) is not None  # another host began an upload
    facts = await McubootDriver(peer, FAST).abort()
    assert [s.version for s in facts.slots] == ["1.0.0"]
    answer = peer.server.handle(first)
    assert answer is not None
    assert smp.decode_packet(answer.packet)[1] == {"off": 500}  # a new session, not a resume
    assert any((h.group, h.command) == (0, 5) for h in peer.requests)  # it reset the board
    await peer.close()


async def test_a_lost_reset_is_sent_once_and_reported_as_still_pending(tmp_path: Path) -> None:
    def mute_reset(h: smp.SmpHeader, wire: bytes) -> bytes | None:
        return None if (h.group, h.command) == (0, 5) else wire

    peer = PeerTransport(tmp_path, mute_reset)  # this peer never really resets
    options = DriverOptions(baud=0, confirm_timeout_s=0.3, extra={"response_timeout_s": 0.05})
    with pytest.raises(DriverError) as err:
        await McubootDriver(peer, options).install(signed(tmp_path, "2.0.0"))
    assert err.value.code == "MCU_TIMEOUT"
    assert err.value.step is Step.BOOT
    assert "still pending" in err.value.message
    assert sum(1 for h in peer.requests if (h.group, h.command) == (0, 5)) == 1
    await peer.close()


async def test_image_larger_than_the_slot_is_refused_before_writing(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=40_000)
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "slot-size=0x8000") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(image)
            facts = await driver.identify()
    assert err.value.code == "IMAGE_TOO_LARGE"
    assert "24576" in err.value.message
    assert [s.index for s in facts.slots] == [0]


async def test_chunks_fit_the_buffer_the_device_reports_or_the_port_sets(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=6_000)
    for extra, limit in (({}, 1024), ({"buf_size": "0x100"}, 256)):
        peer = PeerTransport(tmp_path / f"p{limit}")
        sizes: list[int] = []
        original = peer.server.handle

        def spy(packet: bytes, original=original, sizes=sizes) -> object:
            sizes.append(len(packet))
            return original(packet)

        peer.server.handle = spy
        options = DriverOptions(baud=0, confirm_timeout_s=0.2, extra={**FAST.extra, **extra})
        with pytest.raises(DriverError):  # this peer never resets: the upload is what counts
            await McubootDriver(peer, options).install(image)
        assert max(sizes) + 4 <= limit
        assert max(sizes) + 4 > limit - 8  # and they fill it
        await peer.close()


async def test_pipelined_upload_recovers_from_a_lost_chunk(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=12_000)
    lost: list[int] = []

    def lose_one_chunk(h: smp.SmpHeader, n: int) -> bool:
        upload = (h.group, h.command) == (1, 1)
        if upload and not lost and sum(1 for r in peer.requests if r.command == 1) == 4:
            lost.append(n)
            return True
        return False

    peer = PeerTransport(tmp_path, swallow=lose_one_chunk)
    options = DriverOptions(baud=0, confirm_timeout_s=0.2, extra={**FAST.extra, "upload_window": 2})
    driver = McubootDriver(peer, options)
    with pytest.raises(DriverError) as err:  # this peer never resets; the upload is the point
        await driver.install(image)
    assert err.value.step is Step.BOOT
    assert lost
    written = peer.flash.read(1, 0, len(image.data))
    assert written == image.data
    offsets = [
        smp.decode_packet(p)[1]["off"]
        for h, p in zip(peer.requests, peer.packets, strict=True)
        if (h.group, h.command) == (1, 1)
    ]
    assert len(offsets) > len(set(offsets))  # the lost chunk (and the one after) went again
    await peer.close()


# --- devices as they ship ---------------------------------------------------------------


async def test_stock_zephyr_identifies_and_installs_from_configured_identity(
    tmp_path: Path,
) -> None:
    """Zephyr's smp_svr sample answers os info, mcumgr params, bootloader and slot info
    with ENOTSUP: uid and board come from the port's configuration."""
    image = signed(tmp_path, "2.0.0")
    options = DriverOptions(
        baud=0, confirm_timeout_s=5.0, extra={"uid": "C0FFEE01", "board": "nrf52840dk"}
    )
    with running_sim(tmp_path / "mcu", *STOCK) as sim:
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            facts = await driver.identify()
            result = await driver.install(image)
    assert facts.uid == "c0ffee01"
    assert facts.model == "nrf52840dk"
    assert facts.compat == "zephyr:nrf52840dk:"
    assert facts.details["board_source"] == "config"
    assert facts.details["buf_size"] == 256  # Zephyr's default UART MTU, nothing reported
    assert "kernel" not in facts.details
    assert facts.capacity == 0  # no slot info and no slot_size configured
    assert facts.installed_version == "1.0.0"
    assert result.outcome is Outcome.CONFIRMED
    assert result.facts.installed_version == "2.0.0"


async def test_stock_zephyr_without_a_configured_uid_says_what_to_set(tmp_path: Path) -> None:
    with running_sim(tmp_path / "mcu", *STOCK) as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            with pytest.raises(DriverError) as err:
                await driver.identify()
    assert err.value.code == "MCU_NO_UID"
    assert "uid = <hex>" in err.value.message
    assert "os info is not in its build" in err.value.message


async def test_device_reset_mid_upload_restarts_the_upload(tmp_path: Path) -> None:
    """After a reset Zephyr's img_mgmt answers the next chunk with offset 0."""
    image = signed(tmp_path, "2.0.0", size=30_000)
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "reset-upload-at=12000") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            result = await driver.install(image)
    assert result.outcome is Outcome.CONFIRMED
    assert result.details["upload_restarts"] == 1
    assert result.details["bytes_sent"] > len(image.data)  # the lost part went twice
    assert result.facts.installed_version == "2.0.0"


async def test_serial_recovery_overwrites_the_primary_slot_and_says_so(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=20_000)
    options = DriverOptions(baud=0, confirm_timeout_s=5.0, extra={"uid": UID})
    with running_sim(tmp_path / "mcu", *STOCK, "--fault", "recovery") as sim:
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            before = await driver.identify()
            result = await driver.install(image)
    assert before.in_bootloader
    assert before.details["mode"] == "serial-recovery"
    assert before.safety is Safety.SINGLE_SLOT  # no trial, no revert: single-image overwrite
    assert Capability.TRIAL_BOOT not in before.capabilities
    assert Capability.ROLLBACK not in before.capabilities
    assert before.installed_version == "1.0.0"  # what MCUboot lists in the primary slot
    assert result.slot == 0
    assert result.outcome is Outcome.CONFIRMED
    after = result.facts  # read from the app, which MCUboot booted after the reset
    assert not after.in_bootloader
    assert after.installed_version == "2.0.0"
    assert after.slots[0].state is SlotState.CONFIRMED


async def test_serial_recovery_reports_an_image_mcuboot_refuses(tmp_path: Path) -> None:
    trusted, other = imgtool_keygen(tmp_path, "trusted"), imgtool_keygen(tmp_path, "other")
    data = imgtool_sign_with(tmp_path, os.urandom(9000), "2.0.0", other)
    options = DriverOptions(baud=0, confirm_timeout_s=2.0, extra={"uid": UID})
    args = (*STOCK, "--fault", "recovery", "--fault", f"key={trusted}")
    with running_sim(tmp_path / "mcu", *args) as sim:
        async with registry.open_driver(sim.port, SPEC, options) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(as_image(data, "2.0.0"))
    assert err.value.code == "MCU_VERIFY_FAILED"
    assert err.value.step is Step.CHECK
    assert "hash or signature" in err.value.message


async def test_image_one_of_a_two_image_part(tmp_path: Path) -> None:
    image = signed(tmp_path, "2.0.0", size=20_000)
    args = (*SIM, "--fault", "images=2")
    with running_sim(tmp_path / "mcu", *args) as sim:
        one = DriverOptions(baud=0, confirm_timeout_s=5.0, extra={"image": "1"})
        async with registry.open_driver(sim.port, SPEC, one) as driver:
            before = await driver.identify()
            result = await driver.install(image)
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            zero = await driver.identify()
        three = DriverOptions(baud=0, extra={"image": "2"})
        async with registry.open_driver(sim.port, SPEC, three) as driver:
            with pytest.raises(DriverError) as err:
                await driver.identify()
    assert before.details["images"] == 2
    assert before.details["image"] == 1
    assert result.outcome is Outcome.CONFIRMED
    assert result.facts.installed_version == "2.0.0"
    assert zero.installed_version == "1.0.0"  # image 0 (the app core) was not touched
    assert err.value.code == "DRIVER_CONFIG_INVALID"
    assert "lists 2 image(s)" in err.value.message


@pytest.mark.parametrize("confirm", [False, True])
async def test_padded_image_uploads_only_its_own_bytes(tmp_path: Path, confirm: bool) -> None:
    data = imgtool_sign_with(
        tmp_path, os.urandom(30_000), "2.0.0", slot_size=0x40000, pad=True, confirm=confirm
    )
    own = parse_image(data).total_size
    assert len(data) == 0x40000
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "slot-size=0x40000") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            result = await driver.install(as_image(data, "2.0.0"))
    assert result.bytes == own
    assert result.details["padding_skipped"] == 0x40000 - own
    assert result.wire_bytes_tx < own * 2  # not the 256 KiB of padding
    assert result.outcome is Outcome.CONFIRMED  # trial boot, then the app's confirm


async def test_the_package_names_the_image_it_is_for(tmp_path: Path) -> None:
    data = signed(tmp_path, "2.0.0", size=12_000).data
    for_net = Image(data, "2.0.0", hashlib.sha256(data).hexdigest(), target=1)
    with running_sim(tmp_path / "mcu", *SIM, "--fault", "images=2") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:  # port: image 0
            result = await driver.install(for_net)
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            app = await driver.identify()
    assert result.outcome is Outcome.CONFIRMED
    assert result.details["image"] == 1
    assert result.facts.installed_version == "2.0.0"
    assert app.installed_version == "1.0.0"
    with running_sim(tmp_path / "one", *SIM) as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(for_net)
    assert err.value.code == "IMAGE_REJECTED"
    assert "targetImage = 1" in err.value.message


def _cli(*args: str) -> dict[str, object]:
    """``mcu-gateway ARGS --json``: its last stdout line as JSON (exit status 0 required)."""
    import json

    out = subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_info_and_flash_commands_on_stock_recovery_and_two_image_boards(tmp_path: Path) -> None:
    """The CLI as a user runs it: stock Zephyr, serial recovery, image 1 of two."""
    image = tmp_path / "app.signed.bin"
    image.write_bytes(signed(tmp_path, "2.0.0", size=9_000).data)
    common = ("--baud", "0", "--bootloader", "mcuboot", "--confirm-timeout", "5")
    uid = ("--driver-opt", f"uid={UID}")
    with running_sim(tmp_path / "stock", *STOCK) as sim:
        info = _cli("info", "--port", sim.port, "--bootloader", "mcuboot", "--baud", "0", *uid)
        flashed = _cli("flash", "--port", sim.port, *common, *uid, "--version", "2.0.0",
                       str(image))  # fmt: skip
    assert info["uid"] == UID and info["mode"] == "app"
    assert flashed["ok"] is True and flashed["running_version"] == "2.0.0"
    with running_sim(tmp_path / "recovery", *STOCK, "--fault", "recovery") as sim:
        info = _cli("info", "--port", sim.port, "--bootloader", "mcuboot", "--baud", "0", *uid)
        flashed = _cli("flash", "--port", sim.port, *common, *uid, "--version", "2.0.0",
                       str(image))  # fmt: skip
    assert info["mode"] == "bootloader" and info["safety"] == "single-slot"
    assert flashed["ok"] is True and flashed["slot"] == 0
    package = tmp_path / "net.mcufw"
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "image", "pack", str(image), "-o", str(package),
         "--provider", "contoso", "--name", "net", "--version", "2.0.0",
         "--manufacturer", "zephyr", "--model", "vmcu_nrf52840", "--target-image", "1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with running_sim(tmp_path / "two", *SIM, "--fault", "images=2") as sim:
        flashed = _cli("flash", "--port", sim.port, *common, "--allow-unsigned", str(package))
        info = _cli("info", "--port", sim.port, "--bootloader", "mcuboot", "--baud", "0")
    assert flashed["ok"] is True
    assert flashed["details"]["image"] == 1  # type: ignore[index]
    assert info["details"]["images"] == 2  # type: ignore[index]
    assert info["installed_version"] == "1.0.0"  # image 0, the port's default, untouched


async def test_an_image_signed_with_another_key_is_refused_by_mcuboot(tmp_path: Path) -> None:
    trusted, other = imgtool_keygen(tmp_path, "trusted"), imgtool_keygen(tmp_path, "other")
    wrong = as_image(imgtool_sign_with(tmp_path, os.urandom(9000), "2.0.0", other), "2.0.0")
    right = as_image(imgtool_sign_with(tmp_path, os.urandom(9000), "2.0.1", trusted), "2.0.1")
    with running_sim(tmp_path / "mcu", *SIM, "--fault", f"key={trusted}") as sim:
        async with registry.open_driver(sim.port, SPEC, OPTIONS) as driver:
            refused = await driver.install(wrong)
            accepted = await driver.install(right)
    assert refused.outcome is Outcome.ROLLED_BACK  # MCUboot erased it instead of swapping
    assert refused.facts.installed_version == "1.0.0"
    assert [s.index for s in refused.facts.slots] == [0]
    assert accepted.outcome is Outcome.CONFIRMED
    assert accepted.facts.installed_version == "2.0.1"

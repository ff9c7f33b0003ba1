"""The stm32-rom driver against `mcu-gateway sim --bootloader stm32-rom` on a real pty."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from protocols import registry
from protocols.driver import (
    Capability,
    DeviceFacts,
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
from protocols.failures import Kind
from protocols.stm32rom import codec, record
from protocols.stm32rom.driver import Wiring
from simulators.mcu.stm32rom.chip import APP_UART_LOG
from tests.sim_harness import SimProcess, cli, running_sim, stm32_raw

UID = "0102030405060708090a0b0c"
SIM = ("--bootloader", "stm32-rom", "--baud", "0", "--flash-scale", "0.05", "--uid", UID)
BOOT0_HIGH = (*SIM, "--boot0", "high")
OPTIONS = DriverOptions(baud=0)
ENTER = DriverOptions(baud=0, extra={"enter_command": "bootloader\n"})


def _image(size: int, version: str, seed: int = 5) -> Image:
    data = random.Random(seed).randbytes(size)
    return Image(data, version, hashlib.sha256(data).hexdigest())


async def _identify(port: str, options: DriverOptions = OPTIONS) -> DeviceFacts:
    async with registry.open_driver(port, registry.get("stm32-rom"), options) as driver:
        return await driver.identify()


async def test_install_then_the_version_survives_power_cycles(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    image = _image(20_000, "2.0.0")
    events: list[Progress] = []
    sim = SimProcess(tmp_path / "mcu", BOOT0_HIGH).start()
    try:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            before = await driver.identify()
            assert before.driver == "stm32-rom"
            assert before.uid == UID
            assert (before.model, before.compat) == ("stm32f10x-md", "st:stm32f10x-md:")
            assert before.installed_version is None
            assert before.in_bootloader
            assert before.safety is Safety.SINGLE_SLOT
            assert before.capabilities == {Capability.READBACK}
            assert before.capacity == 127 * 1024  # the last 1 KiB page holds the record
            assert before.slots[0].state is SlotState.INVALID
            result = await driver.install(image, events.append)
        assert result.outcome is Outcome.CONFIRMED
        assert result.bytes == len(image.data)
        assert result.facts.installed_version == "2.0.0"
        assert result.facts.installed_sha256 == image.sha256
        assert not result.facts.in_bootloader
        steps = list(dict.fromkeys(e.step for e in events))
        assert steps == [Step.CONNECT, Step.ERASE, Step.WRITE, Step.CHECK, Step.ACTIVATE,
                         Step.BOOT]  # fmt: skip
        writes = [e.done for e in events if e.step is Step.WRITE]
        assert writes == sorted(writes) and writes[-1] == len(image.data)

        # Power cycle with BOOT0 high: the record on the MCU still names the version.
        sim.restart()
        after = await _identify(sim.port, ENTER)
        assert after.installed_version == "2.0.0"
        assert after.slots[0].sha256 == image.sha256
        assert after.slots[0].size == len(image.data)
        assert after.uid == UID

        # BOOT0 low: the app runs and ignores AN3155; without a way in there is no answer.
        sim.restart(["--boot0", "low"])
        with pytest.raises(NoAnswer, match="enter_command"):
            await _identify(sim.port)
        # The app's "jump to the bootloader" command gets in; identify leaves the app running.
        for _ in range(2):
            facts = await _identify(sim.port, ENTER)
            assert facts.installed_version == "2.0.0"
            assert not facts.in_bootloader
    finally:
        sim.stop()


async def test_power_cut_mid_write_leaves_no_version_and_a_reinstall_completes(
    tmp_path: Path,
) -> None:
    spec = registry.get("stm32-rom")
    sim = SimProcess(tmp_path / "mcu", BOOT0_HIGH).start()
    try:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            assert (await driver.install(_image(8_000, "1.0.0"))).ok

        def cut(event: Progress) -> None:
            if event.step is Step.WRITE and event.done >= 10_000:
                sim.kill()  # kill -9: the flash file is what a power cut leaves

        async with registry.open_driver(sim.port, spec, ENTER) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(_image(30_000, "2.0.0"), cut)
        assert err.value.code in ("MCU_DISCONNECTED", "MCU_TIMEOUT")
        assert err.value.step is Step.WRITE

        sim.start()  # the board comes back with BOOT0 strapped high
        facts = await _identify(sim.port)
        # Neither the old version (its pages are erased) nor the new one (no record yet).
        assert facts.installed_version is None
        assert facts.slots[0].state is SlotState.INVALID
        assert "no version record" in str(facts.details["record"])

        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(_image(30_000, "2.0.0"))
        assert result.ok
        sim.restart()
        assert (await _identify(sim.port)).installed_version == "2.0.0"
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("mute=0x02", "MCU_TIMEOUT", "GET_ID"),
        ("garbage=0x00", "MCU_PROTOCOL_ERROR", "expected ACK"),
        ("other-answer=0x02", "MCU_PROTOCOL_ERROR", "another command"),
        ("nack=0x02", "MCU_NACK", "GET_ID"),
        # Get lists Read Memory but its command byte is refused, again and again.
        ("nack=0x11", "MCU_READOUT_PROTECTED", "mass-erases the whole flash"),
    ],
)
async def test_bad_answers_to_identify_are_coded_errors(
    tmp_path: Path, fault: str, code: str, words: str
) -> None:
    with (
        running_sim(tmp_path / "mcu", *BOOT0_HIGH, "--fault", fault) as sim,
        pytest.raises(DriverError) as err,
    ):
        await _identify(sim.port)
    assert err.value.code == code
    assert words in err.value.message
    assert err.value.step is Step.CONNECT


async def test_a_late_answer_is_a_timeout_and_is_not_taken_for_the_next_one(
    tmp_path: Path,
) -> None:
    spec = registry.get("stm32-rom")
    with running_sim(tmp_path / "mcu", *BOOT0_HIGH, "--fault", "late=0x02") as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            with pytest.raises(DriverError) as err:
                await driver.identify()
            assert err.value.code == "MCU_TIMEOUT"
            # The late Get ID answer arrives now; the retry must not read it as its own.
            facts = await driver.identify()
    assert (facts.model, facts.uid) == ("stm32f10x-md", UID)


async def test_a_nacked_write_fails_the_install_and_leaves_no_version(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    sim = SimProcess(tmp_path / "mcu", BOOT0_HIGH).start()
    try:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            assert (await driver.install(_image(4_000, "1.0.0"))).ok
        # The app 1.0.0 runs; the update gets in through its enter command, then fails.
        sim.restart(["--boot0", "low", "--fault", "nack=0x31"])
        async with registry.open_driver(sim.port, spec, ENTER) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(_image(4_000, "2.0.0"))
            assert (err.value.code, err.value.step) == ("MCU_NACK", Step.WRITE)
            # Single slot: the error itself says what the failure cost (it reaches the twin).
            assert "old application was erased" in err.value.message
            assert driver.retransmits == 2  # NACKed blocks are retried before giving up
            facts = await driver.identify()
        assert facts.installed_version is None
        assert facts.in_bootloader  # the half-written image is not started
        # Still the ROM loader, even to a host that cannot ask an app to jump.
        assert (await _identify(sim.port)).in_bootloader
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("fault", "code", "step"),
    [
        ("noop=0x31", "MCU_VERIFY_FAILED", Step.CHECK),  # writes ACKed but nothing programmed
        ("noop=0x21", "MCU_BOOT_FAILED", Step.BOOT),  # Go ACKed but the ROM still answers
    ],
)
async def test_an_install_is_not_confirmed_unless_read_back_and_started(
    tmp_path: Path, fault: str, code: str, step: Step
) -> None:
    spec = registry.get("stm32-rom")
    checked = DriverOptions(baud=0, extra={"boot_check": "get-version"})
    with running_sim(tmp_path / "mcu", *BOOT0_HIGH, "--fault", fault) as sim:
        async with registry.open_driver(sim.port, spec, checked) as driver:
            with pytest.raises(DriverError) as err:
                await driver.install(_image(3_000, "2.0.0"))
    assert (err.value.code, err.value.step) == (code, step)


async def test_after_go_the_app_receives_no_bytes_from_the_install(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    state = tmp_path / "mcu"
    with running_sim(state, *BOOT0_HIGH) as sim:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(_image(3_000, "2.0.0"))
        assert result.ok and not result.facts.in_bootloader
        # The app is running (the enter command reaches it) and heard nothing before.
        log = state / APP_UART_LOG
        assert not log.exists() or log.read_bytes() == b""
        assert (await _identify(sim.port, ENTER)).installed_version == "2.0.0"
        assert log.read_bytes().endswith(b"bootloader\n")


async def test_an_image_too_large_is_rejected_before_anything_is_erased(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    with running_sim(tmp_path / "mcu", *BOOT0_HIGH) as sim:
        async with registry.open_driver(sim.port, spec, ENTER) as driver:
            assert (await driver.install(_image(2_000, "1.0.0"))).ok
            with pytest.raises(DriverError) as err:
                await driver.install(_image(127 * 1024 + 4, "2.0.0"))
            assert err.value.code == "IMAGE_REJECTED"
            assert "does not fit" in err.value.message
            assert "erased" not in err.value.message  # refused before the erase
            blank_start = Image(b"\xff" * 8, "2.0.0", hashlib.sha256(b"\xff" * 8).hexdigest())
            with pytest.raises(DriverError) as err:
                await driver.install(blank_start)
            assert err.value.code == "IMAGE_REJECTED" and "vector table" in err.value.message
        assert (await _identify(sim.port, ENTER)).installed_version == "1.0.0"


async def test_f4_sectors_extended_erase_and_auto_detect(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    image = _image(70_000, "3.1.0")  # spans sectors 0..4 (16+16+16+16+64 KiB)
    with running_sim(tmp_path / "mcu", *BOOT0_HIGH, "--model", "stm32f407") as sim:
        found, facts = await registry.detect(sim.port, OPTIONS, registry.probe_order(["stm32-rom"]))
        assert found.name == "stm32-rom"
        assert facts.model == "stm32f40x"
        assert facts.details["erase_command"] == "0x44"
        assert facts.capacity == 1024 * 1024 - 96  # the record follows the image
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(image)
        assert result.ok
        board = DriverOptions(
            baud=0, extra={"enter_command": "bootloader\n", "compat": "contoso:sensor-x:B"}
        )
        facts = await _identify(sim.port, board)
        assert facts.installed_sha256 == image.sha256
        assert (facts.model, facts.compat) == ("sensor-x", "contoso:sensor-x:B")
        assert facts.details["part"] == "STM32F405/407/415/417"


def test_wiring_options_are_checked() -> None:
    w = Wiring.from_extra({"reset_line": "DTR", "boot0_line": "rts", "reset_active_low": "false"})
    assert (str(w.reset_line), str(w.boot0_line), w.reset_active_low) == ("dtr", "rts", False)
    assert Wiring.from_extra({"compat": "contoso:sensor-x:B"}).compat == "contoso:sensor-x:B"
    bad_keys: list[dict[str, str | int | bool]] = [
        {"reset_line": "cts"},
        {"reset_line": "dtr", "boot0_line": "dtr"},
        {"boot0_active_high": "maybe"},
        {"boot_delay_ms": "soon"},
        {"compat": "sensor-x"},
        {"reset_line": "gpio:17"},
        {"erase": "all"},
        {"boot_check": "maybe"},
    ]
    for bad in bad_keys:
        with pytest.raises(DriverError) as err:
            Wiring.from_extra(bad)
        assert err.value.code == "DRIVER_CONFIG_INVALID"


async def test_reboot_and_abort_start_only_a_verified_app(tmp_path: Path) -> None:
    spec = registry.get("stm32-rom")
    with running_sim(tmp_path / "mcu", *BOOT0_HIGH) as sim:
        async with registry.open_driver(sim.port, spec, ENTER) as driver:
            with pytest.raises(DriverError) as err:
                await driver.reboot()  # blank flash: nothing to start
            assert (err.value.code, err.value.step) == ("MCU_NO_APP", Step.BOOT)
            stay = await driver.abort()
            assert stay.in_bootloader and stay.installed_version is None
            assert (await driver.install(_image(1_000, "1.2.3"))).ok
            facts = await driver.reboot()  # from the app: in through the enter command, out by Go
            assert (facts.installed_version, facts.in_bootloader) == ("1.2.3", False)
            facts = await driver.abort()
            assert (facts.installed_version, facts.in_bootloader) == ("1.2.3", False)


async def test_auto_detect_tells_the_rom_loader_and_mcugw_apart(tmp_path: Path) -> None:
    options = DriverOptions(baud=0)
    with running_sim(tmp_path / "stm32", *BOOT0_HIGH) as sim:
        spec, facts = await registry.detect(sim.port, options, registry.probe_order())
        assert (spec.name, facts.uid) == ("stm32-rom", UID)
    # The 0x7F probe, tried first, does not upset a device that speaks mcugw.
    with running_sim(tmp_path / "mcugw", "--baud", "0") as sim:
        order = registry.probe_order(["stm32-rom", "mcugw"])
        spec, facts = await registry.detect(sim.port, options, order)
        assert (spec.name, facts.installed_version) == ("mcugw", "1.0.0")


async def test_a_read_protected_part_has_its_own_code_and_unprotect_is_opt_in(
    tmp_path: Path,
) -> None:
    spec = registry.get("stm32-rom")
    state = tmp_path / "mcu"
    sim = SimProcess(state, BOOT0_HIGH).start()
    try:
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            assert (await driver.install(_image(4_000, "1.0.0"))).ok
        sim.restart(["--rdp", "1"])  # the same app, now readout-protected
        flash = (state / "flash.bin").read_bytes()
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            for call in (driver.identify, lambda: driver.install(_image(4_000, "2.0.0"))):
                with pytest.raises(DriverError) as err:
                    await call()
                assert err.value.code == "MCU_READOUT_PROTECTED"
                assert err.value.kind is Kind.PROTECTED
                assert err.value.step is Step.CONNECT
                for words in ("readout-protected", "mass-erases the whole flash",
                              "unprotect = yes"):  # fmt: skip
                    assert words in err.value.message
        assert (state / "flash.bin").read_bytes() == flash  # nothing was touched

        opt_in = DriverOptions(baud=0, extra={"unprotect": "yes"})
        async with registry.open_driver(sim.port, spec, opt_in) as driver:
            facts = await driver.identify()  # read-only: still protected afterwards
            assert facts.uid == "" and facts.installed_version is None
            assert "RDP level 1" in str(facts.details["readout_protection"])
            events: list[Progress] = []
            result = await driver.install(_image(4_000, "2.0.0"), events.append)
        assert result.ok
        assert result.facts.uid == UID and result.facts.installed_version == "2.0.0"
        assert Step.ERASE in {e.step for e in events}
        after = await _identify(sim.port, ENTER)
        assert after.installed_version == "2.0.0"
    finally:
        sim.stop()


F4_SECTOR = [16 * 1024] * 4 + [64 * 1024] + [128 * 1024] * 7


def _sector_at(flash: bytes, n: int) -> bytes:
    start = sum(F4_SECTOR[:n])
    return flash[start : start + F4_SECTOR[n]]


@pytest.mark.parametrize("size", [16_000, 16 * 1024])
async def test_a_16k_install_on_an_f407_erases_only_the_sectors_the_image_needs(
    tmp_path: Path, size: int
) -> None:
    spec = registry.get("stm32-rom")
    state = tmp_path / "mcu"
    marker = b"DATA" * 64
    with running_sim(state, *BOOT0_HIGH, "--model", "stm32f407") as sim:
        # The application's own data in sector 1 and in the last sector.
        stm32_raw(sim.port, codec.write_memory(0x0800_4000, marker),
             codec.write_memory(0x080E_0000, marker))  # fmt: skip
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(_image(size, "1.0.0"))
        assert result.ok
        at = result.facts.details["record_address"]
        assert (await _identify(sim.port, ENTER)).installed_version == "1.0.0"
    flash = (state / "flash.bin").read_bytes()
    assert _sector_at(flash, 1)[:256] == marker  # kept (a full sector 0 puts the record at
    assert _sector_at(flash, 11)[:256] == marker  # the blank end of sector 1, unerased)
    expected = 0x0800_3FA0 if size < 16 * 1024 - 96 else 0x0800_7FA0
    assert at == f"{expected:#010x}"


@pytest.mark.parametrize(
    ("model", "size", "slot"),
    [
        # F1: the record page's first word reads erased, foreign bytes after it.
        ("stm32f103", 3000, 0x0801_FC00 + 8),
        # F4: a full sector 0 puts the record at the end of sector 1, which holds data.
        ("stm32f407", 16 * 1024, 0x0800_7FA0 + 8),
    ],
)
async def test_a_record_place_taken_for_blank_that_is_not_is_erased_and_written_again(
    tmp_path: Path, model: str, size: int, slot: int
) -> None:
    spec = registry.get("stm32-rom")
    state = tmp_path / "mcu"
    with running_sim(state, *BOOT0_HIGH, "--model", model) as sim:
        stm32_raw(sim.port, codec.write_memory(slot, b"DATA" * 4))
        async with registry.open_driver(sim.port, spec, OPTIONS) as driver:
            result = await driver.install(_image(size, "1.0.0"))
        assert result.ok
        at = int(str(result.facts.details["record_address"]), 16)
        assert at == slot - 8
        facts = await _identify(sim.port, ENTER)
        assert facts.installed_version == "1.0.0"
    flash = (state / "flash.bin").read_bytes()
    off = at - 0x0800_0000
    assert record.decode(flash[off : off + record.SIZE]).version == "1.0.0"


async def test_f4_record_moves_with_the_image_and_a_legacy_record_is_read_then_retired(
    tmp_path: Path,
) -> None:
    spec = registry.get("stm32-rom")
    state = tmp_path / "mcu"
    old = _image(20_000, "0.9.0")
    legacy = record.VersionRecord("0.9.0", 0x0800_0000, len(old.data),
                                  bytes.fromhex(old.sha256)).encode()  # fmt: skip
    with running_sim(state, *BOOT0_HIGH, "--model", "stm32f407") as sim:
        # A device flashed by the previous driver: the record at the last sector's start.
        blocks = [old.data[i : i + 256] for i in range(0, len(old.data), 256)]
        stm32_raw(
            sim.port,
            codec.extended_erase([0, 1]),
            *(codec.write_memory(0x0800_0000 + 256 * i, b + b"\xff" * (-len(b) % 4))
              for i, b in enumerate(blocks)),
            codec.write_memory(0x080E_0000, legacy),
        )  # fmt: skip
        facts = await _identify(sim.port)
        assert facts.installed_version == "0.9.0"
        assert facts.details["record_address"] == "0x080e0000"
        async with registry.open_driver(sim.port, spec, ENTER) as driver:
            assert (await driver.install(_image(70_000, "1.0.0"))).ok  # sectors 0..4
            assert (await driver.install(_image(5_000, "1.1.0"))).ok  # sector 0 only
        facts = await _identify(sim.port, ENTER)
        assert facts.installed_version == "1.1.0"
        assert facts.details["record_address"] == "0x08003fa0"
    flash = (state / "flash.bin").read_bytes()
    assert flash[0xE0000:0xE0004] == b"\x00" * 4  # the legacy record, retired
    assert flash[0x1FFA0:0x1FFA4] == b"\x00" * 4  # the 70 000-byte image's record, retired


def test_an_unknown_driver_opt_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "info", "--port", "/dev/none-such", "--bootloader", "stm32-rom",
                       "--driver-opt", "resetline=dtr")  # fmt: skip
    assert code == 1
    assert "unknown driver option 'resetline' for stm32-rom (known: boot0_active_high" in err
    assert len(err.strip().splitlines()) == 1
    # Without --bootloader a key must be one that some driver reads.
    code, _, err = cli(capsys, "info", "--port", "/dev/none-such", "--driver-opt", "bot0_line=x")
    assert code == 1 and "unknown driver option 'bot0_line'" in err


def test_enter_command_with_an_escape_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "app.bin"
    app.write_bytes(_image(2_000, "1.0.0").data)
    sim = SimProcess(tmp_path / "mcu", BOOT0_HIGH).start()
    try:
        port = ("--port", sim.port, "--bootloader", "stm32-rom", "--baud", "0")
        code, _, err = cli(capsys, "flash", *port, "--version", "1.0.0", "--allow-unsigned",
                           str(app))  # fmt: skip
        assert code == 0, err
        sim.restart(["--boot0", "low"])  # the app runs; only its enter command gets in
        port = ("--port", sim.port, "--bootloader", "stm32-rom", "--baud", "0")
        code, out, err = cli(capsys, "info", *port, "--driver-opt", "enter_command=bootloader\\n")
        assert code == 0, err
        assert "1.0.0" in out
    finally:
        sim.stop()

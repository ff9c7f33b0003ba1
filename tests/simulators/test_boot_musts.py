"""Every MUST of docs/protocol.md §10, one deterministic test each, on both implementations.

Each test writes a flash state (slot images and trailer records, built with the Python
trailer codec) into the Python model (:class:`SimDevice`) and into the C core
(:class:`NativeDevice`, ports/host/cutdev.c under ASan and UBSan), powers the part on or
sends it requests, and checks the choice and the records it wrote. A mutant that drops any
one rule (the hash check of a TRIAL slot before it boots, the attempt count, a torn
position as an attempt, ...) fails at least one of these every time, in either language;
the random power-cut enumeration alone catches some of them only by luck.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from protocols.mcugw.constants import SlotState, Status
from protocols.mcugw.packets import (
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    DataAck,
    DataRequest,
    Request,
    Response,
    VerifyRequest,
)
from simulators.mcu.cutcheck import PowerLost
from simulators.mcu.cutdevice import SimDevice
from simulators.mcu.cutnative import NativeDevice, close_server
from simulators.mcu.flash import Flash
from simulators.mcu.models import MODELS
from simulators.mcu.trailer import RECORD_SIZE, RecordKind, SlotStatus, encode_record, fold

M = MODELS["vmcu-l0"]  # max_trial_boots 2, 32 records per trailer
OLD = bytes(range(256)) * 16  # 4 KiB
NEW = bytes(reversed(range(256))) * 24  # 6 KiB


class Part(Protocol):
    def arm_cut(self, op: int | None) -> None: ...
    def power_on(self, stay: bool = False) -> None: ...
    def request(self, req: Request) -> Response | None: ...
    def running_slot(self) -> int | None: ...
    def flash(self) -> bytes: ...


class PyPart:
    opened: ClassVar[list[Flash]] = []  # closed when the module is done (tests/conftest.py checks)

    def __init__(self, image: bytes, path: Path) -> None:
        path.write_bytes(image)
        self.dev = SimDevice(M, app_version="")
        self.dev.flash.close()
        self.dev.flash = Flash(M, path)
        PyPart.opened.append(self.dev.flash)

    def arm_cut(self, op: int | None) -> None:
        self.dev.arm_cut(op)

    def power_on(self, stay: bool = False) -> None:
        self.dev.power_on(stay)

    def request(self, req: Request) -> Response | None:
        return self.dev.request(req)

    def running_slot(self) -> int | None:
        return self.dev.core.running_slot if self.dev.running_image() is not None else None

    def flash(self) -> bytes:
        return self.dev.flash.snapshot()


class CPart:
    def __init__(self, image: bytes, path: Path) -> None:
        path.write_bytes(image)
        self.path = path
        self.dev = NativeDevice("vmcu-l0", app_version="")
        self.dev.load(path)

    def arm_cut(self, op: int | None) -> None:
        self.dev.arm_cut(op)

    def power_on(self, stay: bool = False) -> None:
        self.dev.power_on(stay)

    def request(self, req: Request) -> Response | None:
        return self.dev.request(req)

    def running_slot(self) -> int | None:
        return self.dev.running_slot()

    def flash(self) -> bytes:
        self.dev.save(self.path)
        return self.path.read_bytes()


@pytest.fixture(scope="module", autouse=True)
def _cutdev() -> Iterator[None]:
    yield
    close_server()
    for flash in PyPart.opened:
        flash.close()


PartType = type[PyPart] | type[CPart]


@pytest.fixture(params=["python", "c"])
def part(request: pytest.FixtureRequest) -> PartType:
    return PyPart if request.param == "python" else CPart


class Layout:
    """A vmcu-l0 flash image under construction."""

    def __init__(self) -> None:
        self.data = bytearray(b"\xff" * M.flash_size)
        self.used = [0, 0]

    def image(self, slot: int, data: bytes) -> Layout:
        base = slot * M.region_size
        self.data[base : base + len(data)] = data
        return self

    def raw(self, slot: int, record: bytes) -> Layout:
        base = slot * M.region_size + M.slot_size + self.used[slot] * RECORD_SIZE
        self.data[base : base + RECORD_SIZE] = record
        self.used[slot] += 1
        return self

    def rec(
        self, slot: int, kind: RecordKind, arg: int = 0, sha: bytes = b"", ver: str = ""
    ) -> Layout:
        return self.raw(slot, encode_record(kind, arg, sha, ver))

    def installed(
        self, slot: int, data: bytes, version: str, gen: int, *, confirmed: bool = True,
        sha: bytes | None = None,
    ) -> Layout:  # fmt: skip
        """Image plus BEGIN, COMPLETE, TRIAL(gen) and, if confirmed, CONFIRMED."""
        self.image(slot, data)
        digest = hashlib.sha256(data).digest() if sha is None else sha
        self.rec(slot, RecordKind.BEGIN, len(data), digest, version)
        self.rec(slot, RecordKind.COMPLETE).rec(slot, RecordKind.TRIAL, gen)
        if confirmed:
            self.rec(slot, RecordKind.CONFIRMED)
        return self


def status(flash: bytes, slot: int) -> SlotStatus:
    base = slot * M.region_size + M.slot_size
    return fold(flash[base : base + M.trailer_size])


def _torn() -> bytes:
    rec = bytearray(encode_record(RecordKind.BOOT))
    rec[60] ^= 0x55  # the CRC no longer matches: a record torn by a cut
    return bytes(rec)


def _make(part: PartType, layout: Layout, tmp_path: Path) -> Part:
    return part(bytes(layout.data), tmp_path / "flash.bin")


def _corrupt(data: bytes) -> bytes:
    return data[:100] + bytes([data[100] ^ 1]) + data[101:]


# ---------------------------------------------------------------- §10.3 boot decision


def test_a_trial_whose_bytes_do_not_hash_is_never_booted(part: PartType, tmp_path: Path) -> None:
    """§10.3: never boot a slot whose hash does not match; the trial is marked INVALID."""
    lay = Layout().installed(0, OLD, "1.0.0", 1)
    lay.installed(1, NEW, "2.0.0", 2, confirmed=False, sha=hashlib.sha256(_corrupt(NEW)).digest())
    mcu = _make(part, lay, tmp_path)
    mcu.power_on()
    assert mcu.running_slot() == 0
    after = mcu.flash()
    assert status(after, 1).state is SlotState.INVALID
    assert status(after, 1).boots == 0  # no BOOT was recorded for it


def test_a_confirmed_image_that_fails_its_hash_is_skipped_not_marked(
    part: PartType, tmp_path: Path
) -> None:
    """§10.3: the older confirmed image boots; the damaged one is left as it is."""
    lay = Layout().installed(0, OLD, "1.0.0", 1)
    lay.installed(1, _corrupt(NEW), "2.0.0", 2, sha=hashlib.sha256(NEW).digest())
    mcu = _make(part, lay, tmp_path)
    before = bytes(lay.data)
    mcu.power_on()
    assert mcu.running_slot() == 0
    assert mcu.flash() == before  # nothing appended


@pytest.mark.parametrize("newest", [0, 1])
def test_the_newest_confirmed_generation_boots(part: PartType, tmp_path: Path, newest: int) -> None:
    """§10.2: the CONFIRMED slot with the highest generation is the primary."""
    lay = Layout().installed(newest, NEW, "2.0.0", 7).installed(1 - newest, OLD, "1.0.0", 3)
    mcu = _make(part, lay, tmp_path)
    mcu.power_on()
    assert mcu.running_slot() == newest


def test_no_valid_image_stays_in_the_bootloader(part: PartType, tmp_path: Path) -> None:
    lay = Layout().installed(0, _corrupt(OLD), "1.0.0", 1, sha=hashlib.sha256(OLD).digest())
    mcu = _make(part, lay, tmp_path)
    mcu.power_on()
    assert mcu.running_slot() is None


def test_a_trial_gets_exactly_max_trial_boots_attempts_then_rolls_back(
    part: PartType, tmp_path: Path
) -> None:
    """§10.3: each trial boot appends BOOT first; at the limit INVALID, and the old image boots."""
    lay = Layout().installed(0, OLD, "1.0.0", 1).installed(1, NEW, "2.0.0", 2, confirmed=False)
    mcu = _make(part, lay, tmp_path)
    for attempt in range(1, M.max_trial_boots + 1):
        mcu.power_on()  # the app never confirms: each power-on is another attempt
        assert mcu.running_slot() == 1, f"attempt {attempt}"
        st = status(mcu.flash(), 1)
        assert (st.state, st.boots) == (SlotState.TRIAL, attempt)
    mcu.power_on()
    assert mcu.running_slot() == 0
    st = status(mcu.flash(), 1)
    assert st.state is SlotState.INVALID
    assert st.records == 3 + M.max_trial_boots + 1  # BEGIN COMPLETE TRIAL, BOOTs, INVALID


def test_a_torn_position_after_trial_counts_as_a_boot_attempt(
    part: PartType, tmp_path: Path
) -> None:
    """§10.1: power-ons each cut during the BOOT append still end the trial."""
    lay = Layout().installed(0, OLD, "1.0.0", 1).installed(1, NEW, "2.0.0", 2, confirmed=False)
    for _ in range(M.max_trial_boots):
        lay.raw(1, _torn())
    mcu = _make(part, lay, tmp_path)
    mcu.power_on()
    assert mcu.running_slot() == 0
    assert status(mcu.flash(), 1).state is SlotState.INVALID


def test_a_full_trial_trailer_is_a_failed_trial(part: PartType, tmp_path: Path) -> None:
    """§10.1: a TRIAL that can no longer record CONFIRMED folds to INVALID, so the
    confirmed image boots, nothing is written, and the slot can be updated again."""
    lay = Layout().installed(0, OLD, "1.0.0", 1).installed(1, NEW, "2.0.0", 2, confirmed=False)
    while lay.used[1] < M.trailer_size // RECORD_SIZE:
        lay.rec(1, RecordKind.CHECKPOINT, 4096)  # valid, and no transition after TRIAL
    mcu = _make(part, lay, tmp_path)
    before = bytes(lay.data)
    mcu.power_on()
    assert mcu.running_slot() == 0
    assert mcu.flash() == before
    mcu.power_on(stay=True)
    begin = mcu.request(BeginRequest(len(NEW), hashlib.sha256(NEW).digest(), "3.0.0"))
    assert isinstance(begin, BeginResponse), begin  # not BAD_STATE: no trial is pending
    assert begin.slot == 1


def test_reset_stay_enters_the_bootloader_without_a_decision(
    part: PartType, tmp_path: Path
) -> None:
    """§10.3: RESET(STAY) → BOOTLOADER, no appends (a pending trial keeps its attempts)."""
    lay = Layout().installed(0, OLD, "1.0.0", 1).installed(1, NEW, "2.0.0", 2, confirmed=False)
    mcu = _make(part, lay, tmp_path)
    before = bytes(lay.data)
    mcu.power_on(stay=True)
    assert mcu.running_slot() is None
    assert mcu.flash() == before


# ---------------------------------------------------------------- §10.4 the fallback


@pytest.mark.parametrize("newest", [0, 1])
def test_begin_never_targets_the_newest_confirmed_image(
    part: PartType, tmp_path: Path, newest: int
) -> None:
    lay = Layout().installed(newest, NEW, "2.0.0", 5).installed(1 - newest, OLD, "1.0.0", 4)
    mcu = _make(part, lay, tmp_path)
    mcu.power_on(stay=True)
    image = b"\x42" * 3000
    begin = mcu.request(BeginRequest(len(image), hashlib.sha256(image).digest(), "3.0.0"))
    assert isinstance(begin, BeginResponse), begin
    assert begin.slot == 1 - newest


def test_begin_spares_the_image_that_would_boot_when_the_newest_is_damaged(
    part: PartType, tmp_path: Path
) -> None:
    """§9.3: the fallback is the newest *hash-valid* confirmed image."""
    lay = Layout().installed(0, OLD, "1.0.0", 4)
    lay.installed(1, _corrupt(NEW), "2.0.0", 5, sha=hashlib.sha256(NEW).digest())
    mcu = _make(part, lay, tmp_path)
    mcu.power_on(stay=True)
    image = b"\x42" * 3000
    begin = mcu.request(BeginRequest(len(image), hashlib.sha256(image).digest(), "3.0.0"))
    assert isinstance(begin, BeginResponse), begin
    assert begin.slot == 1


def test_begin_is_refused_while_a_trial_is_pending(part: PartType, tmp_path: Path) -> None:
    lay = Layout().installed(0, OLD, "1.0.0", 1).installed(1, NEW, "2.0.0", 2, confirmed=False)
    mcu = _make(part, lay, tmp_path)
    mcu.power_on(stay=True)
    before = mcu.flash()
    image = b"\x42" * 3000
    answer = mcu.request(BeginRequest(len(image), hashlib.sha256(image).digest(), "3.0.0"))
    assert getattr(answer, "status", None) is Status.BAD_STATE, answer
    assert mcu.flash() == before


# ---------------------------------------------------------------- §10.1, §10.2 the update's records


def _send(mcu: Part, image: bytes, sha: bytes | None = None) -> int:
    begin = mcu.request(BeginRequest(len(image), sha or hashlib.sha256(image).digest(), "3.0.0"))
    assert isinstance(begin, BeginResponse), begin
    for off in range(0, len(image), M.max_data):
        ack = mcu.request(DataRequest(off, image[off : off + M.max_data]))
        assert isinstance(ack, DataAck) and ack.status is Status.OK, ack
    return begin.slot


def test_activate_gives_the_next_generation(part: PartType, tmp_path: Path) -> None:
    lay = Layout().installed(0, OLD, "1.0.0", 9)
    mcu = _make(part, lay, tmp_path)
    mcu.power_on(stay=True)
    slot = _send(mcu, NEW)
    assert getattr(mcu.request(VerifyRequest()), "status", None) is Status.OK
    assert getattr(mcu.request(ActivateRequest()), "status", None) is Status.OK
    st = status(mcu.flash(), slot)
    assert (st.state, st.generation) == (SlotState.TRIAL, 10)


def test_verify_of_bytes_that_do_not_hash_marks_the_slot_invalid(
    part: PartType, tmp_path: Path
) -> None:
    lay = Layout().installed(0, OLD, "1.0.0", 1)
    mcu = _make(part, lay, tmp_path)
    mcu.power_on(stay=True)
    slot = _send(mcu, NEW, sha=hashlib.sha256(_corrupt(NEW)).digest())
    verify = mcu.request(VerifyRequest())
    assert getattr(verify, "status", None) is Status.VERIFY_FAILED, verify
    assert status(mcu.flash(), slot).state is SlotState.INVALID
    activate = mcu.request(ActivateRequest())
    assert getattr(activate, "status", None) is Status.NO_IMAGE, activate
    mcu.power_on()
    assert mcu.running_slot() == 0


def test_a_checkpoint_is_recorded_only_behind_programmed_bytes(
    part: PartType, tmp_path: Path
) -> None:
    """§9.3: CHECKPOINT(offset) goes in after every byte below offset is in flash, so a cut
    at any flash op of the transfer leaves a checkpoint that only claims written bytes."""
    image = bytes((i * 7) & 0xFF for i in range(3 * M.sector_size))
    checkpoints = set()
    for k in range(1, 40):  # the transfer takes about 30 ops: past its end nothing is cut
        mcu = _make(part, Layout().installed(0, OLD, "1.0.0", 1), tmp_path)
        mcu.power_on(stay=True)
        mcu.arm_cut(k)
        try:
            slot = _send(mcu, image)
        except PowerLost:
            slot = 1
        after = mcu.flash()
        st = status(after, slot)
        base = slot * M.region_size
        assert after[base : base + st.checkpoint] == image[: st.checkpoint], f"cut at op {k}"
        checkpoints.add(st.checkpoint)
    assert len(checkpoints - {0, len(image)}) >= 2  # both CHECKPOINTs were reached and cut around


# ---------------------------------------------------------------- the watchdog (C core)


@pytest.mark.parametrize(("trial", "armed"), [(True, 1000), (False, 0)])
def test_the_watchdog_is_armed_for_a_trial_boot_only(
    tmp_path: Path, trial: bool, armed: int
) -> None:
    """A trial image starts under the watchdog (an image that hangs is reset and loses an
    attempt); a confirmed image starts without it: the bootloader leaves that to the app."""
    lay = Layout().installed(0, OLD, "1.0.0", 1)
    if trial:
        lay.installed(1, NEW, "2.0.0", 2, confirmed=False)
    mcu = CPart(bytes(lay.data), tmp_path / "flash.bin")
    mcu.power_on()
    mode, slot, booted_trial, watchdog_ms = mcu.dev.state()
    assert mode == 1  # app
    assert (slot, booted_trial) == ((1, 1) if trial else (0, 0))
    assert watchdog_ms == armed

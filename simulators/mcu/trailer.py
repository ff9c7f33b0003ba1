"""Power-loss-safe slot trailer: an append-only log of CRC-checked fixed-size records.

Each state change is one record append, which is one flash program. A torn
append fails its CRC and is ignored, so the slot keeps its previous state;
after a TRIAL record, though, every used position that is not a valid
CONFIRMED or INVALID counts as a boot attempt, so a cut during the trial boot
is never free. A TRIAL slot whose trailer has no free position left can never
be confirmed, so it folds to INVALID: the boot decision is total (§10 of
docs/protocol.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from construct import Bytes, ConstructError, Int8ul, Int16ul, Int32ul, PaddedString, Struct

from protocols.mcugw.constants import SlotState
from protocols.mcugw.crc import crc32
from simulators.mcu.flash import Flash

RECORD_SIZE = 128
MAGIC = 0x5452  # "TR"
_VERSION_MAX = 80

_RECORD = Struct(
    "magic" / Int16ul,
    "kind" / Int8ul,
    "reserved" / Int8ul,
    "arg" / Int32ul,
    "sha256" / Bytes(32),
    "version" / PaddedString(_VERSION_MAX, "utf8"),
    "pad" / Bytes(RECORD_SIZE - 4 - 4 - 4 - 32 - _VERSION_MAX),
)
_BODY = RECORD_SIZE - 4


class RecordKind(enum.IntEnum):
    BEGIN = 1  # arg=size, sha256, version: a transfer into this slot started
    CHECKPOINT = 2  # arg=offset: everything below is programmed
    COMPLETE = 3  # VERIFY matched
    TRIAL = 4  # arg=generation: ACTIVATE; boot on trial
    BOOT = 5  # one trial boot attempt
    CONFIRMED = 6  # the app confirmed; permanent
    INVALID = 7  # trial failed or verify failed; never boot
    STREAM = 8  # arg=stream size, sha256=stream hash: an encoded transfer's stream (§17)


class TrailerFull(Exception):
    """No free record position: callers check :attr:`SlotStatus.free` first."""


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record, as folded."""

    kind: RecordKind
    arg: int = 0
    sha256: bytes = b""
    version: str = ""


@dataclass(frozen=True, slots=True)
class SlotStatus:
    state: SlotState = SlotState.EMPTY
    size: int = 0
    sha256: bytes = b"\x00" * 32
    version: str = ""
    checkpoint: int = 0
    generation: int = 0
    boots: int = 0
    records: int = 0  # used record positions, torn ones included
    free: int = 0  # record positions still erased
    stream_size: int = 0  # encoded transfers: checkpoints are offsets in this stream
    stream_sha256: bytes = b""


def encode_record(kind: RecordKind, arg: int = 0, sha256: bytes = b"", version: str = "") -> bytes:
    body = _RECORD.build(
        {
            "magic": MAGIC,
            "kind": int(kind),
            "reserved": 0,
            "arg": arg,
            "sha256": sha256.ljust(32, b"\x00"),
            "version": version,
            "pad": b"\x00" * (RECORD_SIZE - 4 - 4 - 4 - 32 - _VERSION_MAX),
        }
    )[:_BODY]
    return bytes(body) + crc32(bytes(body)).to_bytes(4, "little")


def decode_record(rec: bytes) -> Record | None:
    """The record at one position, or None if it is torn or not ours."""
    if int.from_bytes(rec[_BODY:], "little") != crc32(rec[:_BODY]):
        return None  # torn append
    try:
        parsed = _RECORD.parse(rec[:_BODY] + b"\x00" * 4)
        kind = RecordKind(parsed.kind)
    except (ConstructError, ValueError, UnicodeDecodeError):
        return None
    if parsed.magic != MAGIC:
        return None
    return Record(kind, parsed.arg, bytes(parsed.sha256), parsed.version)


def fold(raw: bytes) -> SlotStatus:
    """Replay the trailer log into the slot's current status.

    Total over any byte content: whatever the flash holds, this returns a status.
    """
    st = SlotStatus()
    capacity = len(raw) // RECORD_SIZE
    used = 0
    for pos in range(0, capacity * RECORD_SIZE, RECORD_SIZE):
        rec = raw[pos : pos + RECORD_SIZE]
        if rec == b"\xff" * RECORD_SIZE:
            break
        used += 1
        parsed = decode_record(rec)
        if parsed is None:
            if st.state is SlotState.TRIAL:
                # A torn BOOT (or CONFIRMED) still means the image got to run: count it.
                st = replace(st, boots=st.boots + 1)
            continue
        st = _apply(st, parsed.kind, parsed.arg, parsed.sha256, parsed.version)
    free = capacity - used
    if st.state is SlotState.TRIAL and free == 0:
        st = replace(st, state=SlotState.INVALID)  # can never confirm: a failed trial
    return replace(st, records=used, free=free)


def _apply(st: SlotStatus, kind: RecordKind, arg: int, sha: bytes, version: str) -> SlotStatus:
    if kind is RecordKind.BEGIN:
        return SlotStatus(state=SlotState.WRITING, size=arg, sha256=sha, version=version)
    if st.state is SlotState.EMPTY:
        return st  # nothing counts before a BEGIN
    if kind is RecordKind.STREAM and st.state is SlotState.WRITING and not st.stream_size:
        return replace(st, stream_size=arg, stream_sha256=sha)
    if kind is RecordKind.CHECKPOINT and st.state is SlotState.WRITING:
        return replace(st, checkpoint=arg)
    if kind is RecordKind.COMPLETE and st.state is SlotState.WRITING:
        return replace(st, state=SlotState.COMPLETE, checkpoint=st.size)
    if kind is RecordKind.TRIAL and st.state is SlotState.COMPLETE:
        return replace(st, state=SlotState.TRIAL, generation=arg)
    if kind is RecordKind.BOOT and st.state is SlotState.TRIAL:
        return replace(st, boots=st.boots + 1)
    if kind is RecordKind.CONFIRMED and st.state is SlotState.TRIAL:
        return replace(st, state=SlotState.CONFIRMED)
    if kind is RecordKind.INVALID:
        return replace(st, state=SlotState.INVALID)
    return st


class SlotTrailer:
    """Reads and appends the trailer of one slot region."""

    def __init__(self, flash: Flash, index: int) -> None:
        self.flash = flash
        self.index = index
        model = flash.model
        self.image_base = index * model.region_size
        self.base = self.image_base + model.slot_size
        self.size = model.trailer_size

    def stream(self) -> tuple[int, bytes]:
        """(size, SHA-256) of the encoded stream this slot's transfer carries; (0, b"") if raw."""
        st = self.status()
        return st.stream_size, st.stream_sha256

    def status(self) -> SlotStatus:
        return fold(self.flash.read(self.base, self.size))

    @property
    def capacity(self) -> int:
        return self.size // RECORD_SIZE

    def append(
        self, kind: RecordKind, arg: int = 0, sha256: bytes = b"", version: str = ""
    ) -> float:
        used = self.status().records
        if used >= self.capacity:
            raise TrailerFull(f"slot {self.index} trailer full")
        return self.flash.program(
            self.base + used * RECORD_SIZE, encode_record(kind, arg, sha256, version)
        )

    def rewrite(self, records: list[Record]) -> float:
        """Reclaim space: erase the trailer and append ``records`` afresh.

        Only ever done to a slot that is not bootable (WRITING or COMPLETE): a cut
        part-way leaves it EMPTY or WRITING, which costs a re-send, never a boot.
        """
        t = self.erase()
        for r in records:
            t += self.append(r.kind, r.arg, r.sha256, r.version)
        return t

    def erase(self) -> float:
        t = 0.0
        for addr in range(self.base, self.base + self.size, self.flash.model.sector_size):
            t += self.flash.erase_sector(addr)
        return t

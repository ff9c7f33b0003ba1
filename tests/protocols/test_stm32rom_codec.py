"""AN3155 codec: frame vectors, stage-by-stage exchanges, bad answers, the version record."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stm32loader.bootloader import Stm32Bootloader

from protocols.errors import LocalProtocolError
from protocols.stm32rom import codec, record
from protocols.stm32rom.codec import BadReply, Command, Nack, SpecialErase
from protocols.stm32rom.parts import F4, FLASH_BASE, part

F1_GET = bytes.fromhex("79 07 22 00 01 02 11 21 31 43 79")


def test_frame_vectors() -> None:
    assert [codec.command_frame(c).hex() for c in (Command.GET, Command.READ_MEMORY, Command.GO,
            Command.WRITE_MEMORY, Command.ERASE, Command.EXTENDED_ERASE)] == [
        "00ff", "11ee", "21de", "31ce", "43bc", "44bb"]  # fmt: skip
    assert codec.address_frame(0x0800_0000).hex() == "0800000008"
    assert codec.address_frame(0x1FFF_F7E8).hex() == "1ffff7e8ff"
    assert codec.read_length_frame(256).hex() == "ff00"
    assert codec.read_length_frame(1).hex() == "00ff"
    assert codec.write_frame(bytes([1, 2, 3, 4])).hex() == "030102030407"
    assert codec.erase_frame([0, 1, 2]).hex() == "0200010201"
    assert codec.global_erase_frame().hex() == "ff00"
    assert codec.extended_erase_frame([0, 1]).hex() == "00010000000100"
    assert codec.special_erase_frame(SpecialErase.MASS).hex() == "ffff00"
    assert codec.special_erase_frame(SpecialErase.BANK1).hex() == "fffe01"
    assert codec.special_erase_frame(SpecialErase.BANK2).hex() == "fffd02"


@pytest.mark.parametrize(
    "call",
    [
        lambda: codec.write_frame(b""),
        lambda: codec.write_frame(bytes(260)),
        lambda: codec.write_frame(bytes(6)),  # flash takes whole 4-byte words
        lambda: codec.read_length_frame(0),
        lambda: codec.read_length_frame(257),
        lambda: codec.erase_frame([]),
        lambda: codec.erase_frame(list(range(256))),
        lambda: codec.erase_frame([256]),
        lambda: codec.extended_erase_frame([0x10000]),
        lambda: codec.address_frame(1 << 32),
    ],
)
def test_frames_refuse_what_the_protocol_cannot_say(call: object) -> None:
    with pytest.raises(LocalProtocolError):
        call()  # type: ignore[operator]


class _Capture:
    """A connection for stm32loader that ACKs everything and records what it sends."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.timeout = 1

    def write(self, data: bytes) -> None:
        self.sent += data

    def read(self, n: int = 1) -> bytes:
        return bytes([codec.ACK]) * n


def test_frames_match_what_stm32loader_sends() -> None:
    """An independent AN3155 host builds the same bytes for the same commands."""
    conn = _Capture()
    loader = Stm32Bootloader(conn, device_family="F1", verbosity=0)
    data = bytes(range(200, 256)) + bytes(range(100))
    loader.write_memory(0x0800_0400, data)
    ours = codec.write_memory(0x0800_0400, data)
    expected = b"".join(stage.send for stage in ours.stages)
    assert bytes(conn.sent) == expected
    conn.sent.clear()
    loader.erase_memory([3, 4, 5])
    assert bytes(conn.sent) == b"".join(s.send for s in codec.erase([3, 4, 5]).stages)
    conn.sent.clear()
    loader.extended_erase = True
    loader.extended_erase_memory([0, 11])
    assert bytes(conn.sent) == b"".join(s.send for s in codec.extended_erase([0, 11]).stages)
    conn.sent.clear()
    loader.extended_erase_memory(None)
    assert bytes(conn.sent) == b"".join(
        s.send for s in codec.extended_erase(SpecialErase.MASS).stages
    )


def _drive(ex: codec.Exchange, answers: list[bytes]) -> list[bytes]:
    """Play the device: one answer per stage, each fed one byte at a time."""
    sent = []
    for answer in answers:
        sent.append(ex.data_to_send())
        assert ex.data_to_send() == b""  # a stage is sent once
        for i in range(len(answer)):
            ex.receive_data(answer[i : i + 1])
    assert ex.done
    return sent


def test_get_and_get_id_parse_a_recorded_f1_answer() -> None:
    ex = codec.get()
    assert _drive(ex, [F1_GET]) == [b"\x00\xff"]
    info = codec.parse_get(ex.payloads)
    assert info.version_text == "2.2"
    assert info.erase_command is Command.ERASE
    ex = codec.get_id()
    _drive(ex, [bytes.fromhex("79 01 04 10 79")])
    assert codec.parse_get_id(ex.payloads) == 0x410
    assert part(0x410) is not None


def test_read_memory_walks_its_three_stages() -> None:
    ex = codec.read_memory(0x0800_0000, 4)
    sent = _drive(ex, [b"\x79", b"\x79", b"\x79\xde\xad\xbe\xef"])
    assert sent == [b"\x11\xee", bytes.fromhex("0800000008"), b"\x03\xfc"]
    assert ex.payloads == [bytes.fromhex("deadbeef")]


def test_a_nack_names_the_stage_it_refused() -> None:
    ex = codec.write_memory(0x0800_0001, bytes(4))
    ex.data_to_send()
    ex.receive_data(b"\x79")
    ex.data_to_send()
    with pytest.raises(Nack, match="WRITE_MEMORY refused \\(NACK\\) at its address"):
        ex.receive_data(b"\x1f")


@pytest.mark.parametrize(
    ("exchange", "answer", "words"),
    [
        (codec.get_id, bytes.fromhex("79 07 22 00"), "another command"),  # Get's answer
        (codec.get, b"\x55", "expected ACK"),  # noise
        (codec.get_version, bytes.fromhex("79 22 00 00 79 79"), "unexpected bytes"),  # extra
        (lambda: codec.go(FLASH_BASE), b"\x79\x79", "before the address was sent"),
    ],
)
def test_bad_answers_are_bad_replies(exchange: object, answer: bytes, words: str) -> None:
    ex: codec.Exchange = exchange()  # type: ignore[operator]
    ex.data_to_send()
    with pytest.raises(BadReply, match=words):
        ex.receive_data(answer)


def test_a_device_that_speaks_first_is_a_bad_reply() -> None:
    with pytest.raises(BadReply, match="spoke first"):
        codec.get().receive_data(b"\x79")


def test_get_without_write_or_erase_is_not_a_usable_loader() -> None:
    with pytest.raises(BadReply, match="readout protection"):
        codec.parse_get([bytes([0x22, 0x00, 0x01, 0x02])])  # RDP: only Get/GV/GID remain
    with pytest.raises(BadReply, match="neither Erase"):
        codec.parse_get([bytes([0x31, 0x00, 0x11, 0x21, 0x31])])


def test_f4_layout_is_16_16_16_16_64_then_128_kib_sectors() -> None:
    f4 = part(0x413)
    assert f4 is not None and f4.family is F4
    sizes = [s // 1024 for _, s in f4.sectors(1024)]
    assert sizes == [16, 16, 16, 16, 64, *([128] * 7)]
    f1 = part(0x410)
    assert f1 is not None and len(f1.sectors(64)) == 64


def test_version_record_round_trip_and_damage() -> None:
    sha = hashlib.sha256(b"app").digest()
    rec = record.VersionRecord("2.1.0-rc.1", FLASH_BASE, 12345, sha)
    raw = rec.encode()
    assert len(raw) == record.SIZE and len(raw) % 4 == 0
    assert record.decode(raw) == rec
    with pytest.raises(record.RecordError, match="erased"):
        record.decode(b"\xff" * record.SIZE)
    torn = raw[:48] + b"\xff" * (record.SIZE - 48)  # power cut in the middle of the write
    with pytest.raises(record.RecordError, match="damaged"):
        record.decode(torn)
    with pytest.raises(record.RecordError, match="magic"):
        record.decode(b"\x00" * record.SIZE)
    with pytest.raises(record.RecordError, match=r"1\.\.44"):
        record.VersionRecord("x" * 45, FLASH_BASE, 1, sha).encode()


_EXCHANGES = [
    codec.get,
    codec.get_version,
    codec.get_id,
    lambda: codec.read_memory(FLASH_BASE, 16),
    lambda: codec.go(FLASH_BASE),
    lambda: codec.write_memory(FLASH_BASE, bytes(8)),
    lambda: codec.erase([0, 1]),
    lambda: codec.extended_erase(SpecialErase.MASS),
]


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(_EXCHANGES) - 1),
    answer=st.binary(max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
def test_any_bytes_complete_wait_or_raise_a_protocol_error(
    which: int, answer: bytes, cuts: list[int]
) -> None:
    """Fuzz: whatever a device sends, in whatever pieces, the codec never fails otherwise."""
    ex = _EXCHANGES[which]()
    bounds = sorted({0, len(answer), *(c for c in cuts if c <= len(answer))})
    pieces = [answer[a:b] for a, b in itertools.pairwise(bounds)]
    try:
        for piece in pieces:
            ex.data_to_send()  # the host sends each stage once its predecessor is answered
            ex.receive_data(piece)
    except (Nack, BadReply):
        return
    # Otherwise it is finished, awaiting an answer, or holding its next stage to send.
    assert ex.done or ex.waiting or ex.data_to_send()

"""Compressed and delta transfers end to end against the virtual MCU (§17), and bad streams."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from protocols.mcugw import session as session_mod
from protocols.mcugw.constants import Capability, SlotState, Status
from protocols.mcugw.encoding import (
    BLOCK_HEADER,
    HEADER_SIZE,
    Codec,
    DecodeError,
    Encoded,
    choose,
    compress,
    delta,
    parse_stream,
    thumb_code,
)
from protocols.mcugw.errors import DeviceRejected
from simulators.mcu.core import McuCore, _synthetic_image
from simulators.mcu.decoders import BlockStreamDecoder
from simulators.mcu.options import SimOptions
from tests.protocols.test_session_after_cut import _core as _blank_core
from tests.protocols.test_session_after_cut import _old_image_intact, _session

FACTORY = _synthetic_image("1.0.0")


def _core(options: SimOptions | None = None) -> McuCore:
    core = _blank_core(options)
    core.power_on(0.0, stay=True)
    return core


def _code_like(seed: int, n: int) -> bytes:
    # Machine code repeats a limited vocabulary of instructions: compressible, not trivially.
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(600)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


IMAGE = _code_like(1, 40 * 1024)


def _new_slot(core: object) -> bytes:
    t = core.trailers[1]  # type: ignore[attr-defined]
    st = t.status()
    return core.flash.read(t.image_base, st.size)  # type: ignore[attr-defined,no-any-return]


async def test_compressed_flash_sends_fewer_bytes_and_installs_the_image() -> None:
    core = _core()
    async with _session(core) as s:
        result = await s.flash(IMAGE, "2.0.0")
    assert result.outcome == "confirmed" and result.encoding == "compressed"
    assert result.stream_bytes < len(IMAGE) * 0.8
    assert _new_slot(core) == IMAGE


async def test_delta_from_the_running_image_is_a_few_percent() -> None:
    new = bytearray(IMAGE)
    new[5000:5004] = b"\x01\x02\x03\x04"
    new = bytes(new[:9000]) + b"inserted" + bytes(new[9000:])
    core = _core()
    async with _session(core) as s:
        first = await s.flash(IMAGE, "2.0.0")
        assert first.outcome == "confirmed" and first.slot == 1
        await s.connect()
        result = await s.flash(new, "2.1.0", base=IMAGE)
    assert result.outcome == "confirmed" and result.encoding == "delta" and result.slot == 0
    assert result.stream_bytes < len(new) * 0.05
    t = core.trailers[0]
    assert core.flash.read(t.image_base, t.status().size) == new


async def test_a_version_1_mcu_gets_a_raw_transfer() -> None:
    core = _core(SimOptions(decoders=False))
    async with _session(core) as s:
        result = await s.flash(IMAGE, "2.0.0", base=FACTORY)
    assert result.encoding == "raw" and result.stream_bytes == len(IMAGE)
    assert _new_slot(core) == IMAGE


async def test_a_wrong_base_falls_back_to_compression() -> None:
    # The gateway believes the MCU runs OTHER, but INFO says otherwise: no delta is tried.
    core = _core()
    other = _code_like(7, len(FACTORY))
    async with _session(core) as s:
        result = await s.flash(IMAGE, "2.0.0", base=other)
    assert result.encoding == "compressed"


def _tamper(enc: Encoded, block: int, edit: str) -> Encoded:
    stream = bytearray(enc.stream)
    start = 0 if block == 0 else enc.block_ends[block - 1]
    h = BLOCK_HEADER.parse(bytes(stream[start : start + HEADER_SIZE]))
    fields = dict(h)
    fields.pop("_io", None)
    if edit == "garbage":
        stream[start + HEADER_SIZE : start + HEADER_SIZE + 4] = b"\xff\xff\xff\xff"
    elif edit == "length":
        fields["out_len"] -= 4096  # still on the block grid: only decoding can tell
        stream[start : start + HEADER_SIZE] = BLOCK_HEADER.build(fields)
    elif edit == "base":
        fields["dict_source"], fields["dict_start"] = 2, 10**6
        stream[start : start + HEADER_SIZE] = BLOCK_HEADER.build(fields)
    return dataclasses.replace(enc, stream=bytes(stream), flags_delta=edit == "base")


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        ("garbage", Status.DECODE_ERROR),
        ("length", Status.BLOCK_LENGTH),
        ("base", Status.PATCH_REJECTED),
    ],
)
async def test_a_bad_stream_fails_cleanly_and_the_next_update_works(
    edit: str, status: Status, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = _core()
    if edit == "base":
        bad = _tamper(delta(FACTORY, IMAGE), 2, edit)
    else:
        bad = _tamper(compress(IMAGE), 0, edit)
    monkeypatch.setattr(session_mod, "choose", lambda *a, **k: bad)
    async with _session(core) as s:
        with pytest.raises(DeviceRejected) as info:
            await s.flash(IMAGE, "2.0.0")
    assert info.value.status is status
    _old_image_intact(core)
    assert core.trailers[1].status().state is not SlotState.COMPLETE
    monkeypatch.undo()
    async with _session(core) as s:
        result = await s.flash(IMAGE, "2.0.0")
    assert result.outcome == "confirmed" and _new_slot(core) == IMAGE


async def test_a_hash_mismatch_after_decoding_is_verify_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core()
    other = bytearray(IMAGE)
    other[100] ^= 1
    bad = dataclasses.replace(compress(bytes(other)), image_sha256=hashlib.sha256(IMAGE).digest())
    monkeypatch.setattr(session_mod, "choose", lambda *a, **k: bad)
    async with _session(core) as s:
        with pytest.raises(DeviceRejected) as info:
            await s.flash(IMAGE, "2.0.0")
    assert info.value.status is Status.VERIFY_FAILED
    _old_image_intact(core)
    monkeypatch.undo()
    async with _session(core) as s:
        assert (await s.flash(IMAGE, "2.0.0")).outcome == "confirmed"


async def test_a_delta_for_another_base_is_refused_before_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core()
    other = _code_like(7, len(FACTORY))
    wrong = delta(other, IMAGE)
    calls = []

    def pick(caps: int, image: bytes, base: bytes | None, *a: object, **k: object) -> Encoded:
        calls.append(base)
        return wrong if len(calls) == 1 else compress(image)

    monkeypatch.setattr(session_mod, "choose", pick)
    erases = core.flash.erase_count
    async with _session(core) as s:
        result = await s.flash(IMAGE, "2.0.0", base=other)
    # DELTA_BASE_MISMATCH came back; the retry went compressed and succeeded.
    assert len(calls) == 2 and result.encoding == "compressed"
    assert erases < core.flash.erase_count
    _old_image_intact(core)


async def test_a_published_delta_is_sent_as_is_and_refused_for_another_base() -> None:
    new = IMAGE[:20000] + b"a published change" + IMAGE[20000:]
    stream = delta(IMAGE, new).stream
    core = _core()
    wrong = parse_stream(stream, len(new), hashlib.sha256(new).digest(), bytes(32))
    async with _session(core) as s:
        erases = core.flash.erase_count
        with pytest.raises(DeviceRejected) as info:
            await s.flash(b"", "2.1.0", prepared=wrong)
        assert info.value.status is Status.DELTA_BASE_MISMATCH
        assert core.flash.erase_count == erases  # refused before anything was written
        await s.flash(IMAGE, "2.0.0")
        await s.connect()
        right = parse_stream(
            stream, len(new), hashlib.sha256(new).digest(), hashlib.sha256(IMAGE).digest()
        )
        result = await s.flash(b"", "2.1.0", prepared=right)
    assert result.outcome == "confirmed" and result.encoding == "delta"
    assert result.bytes == len(new) and result.stream_bytes == len(stream)
    t = core.trailers[result.slot]
    assert core.flash.read(t.image_base, t.status().size) == new


def test_a_published_stream_with_a_broken_structure_is_refused_before_sending() -> None:
    enc = compress(IMAGE)
    digest = hashlib.sha256(IMAGE).digest()
    with pytest.raises(DecodeError, match="inside a block header"):
        parse_stream(enc.stream + b"\x00", len(IMAGE), digest, None)
    with pytest.raises(DecodeError, match="decodes to"):
        parse_stream(enc.stream, len(IMAGE) + 1, digest, None)
    parsed = parse_stream(enc.stream, len(IMAGE), digest, None)
    assert parsed.block_ends == enc.block_ends and parsed.out_ends == enc.out_ends
    assert parsed.image_offset(enc.block_ends[0]) == min(len(IMAGE), 64 * 1024)


def test_an_incompressible_image_goes_raw_without_encoding_it_whole() -> None:
    caps = Capability.COMPRESS | Capability.DELTA
    noise = random.Random(4).randbytes(300 * 1024)
    assert choose(caps, noise, None, False) is None
    assert choose(caps, IMAGE, None, False) is not None
    assert choose(Capability.WINDOW, IMAGE, None, False) is None  # a version-1 MCU
    assert choose(caps, IMAGE, None, False, allow=False) is None
    # A delta needs the MCU's confirmation (INFO) that it holds the base.
    enc = choose(caps, IMAGE, IMAGE, True)
    assert enc is not None and enc.flags_delta
    enc = choose(caps, IMAGE, IMAGE, False)
    assert enc is not None and not enc.flags_delta


def test_one_release_to_many_mcus_is_probed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's CPU per MB: the incompressibility probe of an image runs once, not per MCU."""
    import lzma

    from protocols.mcugw import encoding

    encoding._probe_ratio.cache_clear()
    runs = []
    real = lzma.compress

    def counting(data: bytes, **kw: object) -> bytes:
        runs.append(len(data))
        return real(data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(encoding.lzma, "compress", counting)
    noise = random.Random(5).randbytes(200 * 1024)
    for _ in range(4):  # four MCUs, one release
        assert choose(Capability.COMPRESS, noise, None, False) is None
    assert runs == [encoding.LZMA_BLOCK_SIZE]


def _codecs(stream: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(stream):
        h = BLOCK_HEADER.parse(stream[pos : pos + HEADER_SIZE])
        out.append(h.codec)
        pos += HEADER_SIZE + h.enc_len
    return out


THUMB = thumb_code(random.Random(3), 150 * 1024)


def test_thumb_code_goes_out_branch_filtered_only_to_an_mcu_that_decodes_it() -> None:
    """LZMA_THUMB (§17.1) is smaller on Thumb code; an MCU without THUMB never gets it."""
    caps = Capability.COMPRESS | Capability.DELTA
    plain = choose(caps, THUMB, None, False)
    filtered = choose(caps | Capability.THUMB, THUMB, None, False)
    assert plain is not None and filtered is not None
    assert set(_codecs(plain.stream)) == {Codec.LZMA}
    assert set(_codecs(filtered.stream)) == {Codec.LZMA_THUMB}
    assert len(filtered.stream) < 0.95 * len(plain.stream)
    # Bytes the filter does not help (no BL pairs) stay plain LZMA block by block.
    mixed = compress(IMAGE + THUMB[: 64 * 1024], 32 * 1024, thumb=True)
    assert _codecs(mixed.stream)[0] == Codec.LZMA and Codec.LZMA_THUMB in _codecs(mixed.stream)


@pytest.mark.parametrize("align", [1, 4, 8])
def test_the_model_un_filters_lzma_thumb_blocks_as_xz_filtered_them(align: int) -> None:
    """The model decodes LZMA without liblzma's filter and un-filters BL pairs itself (as
    the C decoder does), fed in frames that split pairs anywhere; xz's filter encoded."""
    enc = compress(THUMB, thumb=True)
    out = bytearray(len(THUMB))
    dec = BlockStreamDecoder(
        image_size=len(THUMB), stream_start=0, delta=False,
        read_output=lambda o, n: bytes(out[o : o + n]), read_base=lambda o, n: b"",
        base_size=0, align=align,
    )  # fmt: skip
    rng = random.Random(align)
    pos = 0
    while pos < len(enc.stream):
        n = rng.choice([1, 3, 255, 1024])
        for piece in dec.feed(enc.stream[pos : pos + n]):
            assert piece.out_offset % align == 0
            out[piece.out_offset : piece.out_offset + len(piece.data)] = piece.data
        pos += n
    assert out == THUMB


async def test_an_mcu_without_thumb_takes_plain_lzma_and_one_with_it_installs_thumb_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = THUMB[: 40 * 1024]
    core = _core()
    async with _session(core) as s:
        result = await s.flash(image, "2.0.0")
    assert result.outcome == "confirmed" and _new_slot(core) == image
    with_thumb = result.stream_bytes
    monkeypatch.setattr("simulators.mcu.core._DECODER_CAPS", Capability.COMPRESS)
    core = _core()
    async with _session(core) as s:
        result = await s.flash(image, "2.0.0")
    assert result.outcome == "confirmed" and _new_slot(core) == image
    assert with_thumb < 0.95 * result.stream_bytes

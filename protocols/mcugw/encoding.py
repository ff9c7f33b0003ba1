"""Encoded transfers: the block stream a COMPRESS/DELTA MCU decodes into its inactive slot.

One format serves both features (docs/protocol.md §17). The image is cut into
blocks; each names its codec and decodes on its own, so a resume restarts at
any block boundary. Every back-reference reads flash the MCU maps into memory,
never a RAM window:

* ``Codec.LZMA`` (compression): LZMA1 with lc=0, lp=0, pb=0 (``lzma`` from the
  standard library, i.e. liblzma), 64 KiB blocks whose matches stay inside the
  block, i.e. in the slot being written. Measured on our Cortex-M corpus
  (bench/README.md) it beats deflate by 10-15 %, and with lc=lp=0 its
  probability model is 3.5 KiB (1775 u16), inside the 6 KiB RAM budget.
* ``Codec.LZMA_THUMB`` (compression, MCUs with the THUMB capability): the same
  LZMA over the block's bytes after xz's ARM-Thumb branch filter (BL targets
  made absolute, so calls to one function become the same bytes): 9-12 % fewer
  bytes on Thumb-2 code. Each block goes out in whichever codec is smaller.
* ``Codec.DEFLATE`` (delta): raw deflate (zlib) with a *preset dictionary*
  read from flash: ``DictSource.BASE``, a region of the image in the fallback
  (running) slot, or ``DictSource.OUTPUT``, the new image already written
  below the block. Against the old image a block is mostly "copy from there"
  matches: a small code change costs a few percent of the image.

Sans-I/O and pure: the session sends :attr:`Encoded.stream` as DATA.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import lzma
import random
import zlib
from dataclasses import dataclass

from construct import Int8ul, Int16ul, Int32ul, Struct

#: Decoded bytes per delta block (the last one may be shorter). Every block but
#: the last ends on a multiple of it, so block ends fall on sector ends.
BLOCK_SIZE = 4096
#: Decoded bytes per compressed (LZMA) block: bigger blocks find more matches.
LZMA_BLOCK_SIZE = 64 * 1024
#: Largest block a decoder must accept.
MAX_BLOCK = 64 * 1024
#: Deflate's window: the farthest back-reference, hence the largest dictionary.
WINDOW = 32 * 1024
#: Bytes of block header on the wire.
HEADER_SIZE = 20
#: LZMA1 parameters: literal context bits 0 keep the model at 1846 + 768 probabilities.
LZMA_FILTERS = [
    {"id": lzma.FILTER_LZMA1, "lc": 0, "lp": 0, "pb": 0, "dict_size": MAX_BLOCK},
]


def thumb_unfilter(buf: bytearray, i: int, pos: int, final: bool) -> int:
    """Undo the ARM-Thumb branch filter in ``buf`` from index ``i`` (even), where
    ``buf[0]`` is image offset ``pos`` (even); return the first index not decided yet.

    A BL pair (bytes i+1 and i+3 with high bits F0 and F8) at an even block offset had
    its image offset + 4 added to its 22-bit halfword offset. Pairs at i and i + 2
    exclude each other, so each decision needs only its own 4 bytes (§17.1); the last
    3 bytes wait for more unless the block is ``final``.
    """
    while i + 4 <= len(buf):
        if buf[i + 1] & 0xF8 == 0xF0 and buf[i + 3] & 0xF8 == 0xF8:
            v = ((buf[i + 1] & 7) << 19 | buf[i] << 11 | (buf[i + 3] & 7) << 8 | buf[i + 2]) << 1
            v = ((v - (pos + i + 4)) & 0xFFFFFFFF) >> 1
            buf[i : i + 4] = bytes(
                (v >> 11 & 0xFF, 0xF0 | v >> 19 & 7, v & 0xFF, 0xF8 | v >> 8 & 7)
            )
            i += 4
        else:
            i += 2
    return len(buf) if final else i


def thumb_code(rng: random.Random, size: int) -> bytes:
    """Sample Thumb-2-like bytes (for conformance, fuzz and tests), dense with BL pairs
    (F0xx F8xx) calling a few dozen targets, at every even offset (page and block edges
    included) and, after a stray byte, at odd ones: what ``Codec.LZMA_THUMB`` filters."""
    words = [rng.randrange(0x10000) & 0xE7FF for _ in range(300)]  # never F0xx or F8xx
    targets = [rng.randrange(size) & ~1 for _ in range(40)]
    out = bytearray()
    while len(out) < size:
        roll = rng.random()
        if roll < 0.3:
            pos = len(out)
            off = (rng.choice(targets) - pos - 4) >> 1
            out += bytes([off >> 11 & 0xFF, 0xF0 | off >> 19 & 7, off & 0xFF, 0xF8 | off >> 8 & 7])
        elif roll < 0.31:
            out.append(rng.randrange(256))
        else:
            out += rng.choice(words).to_bytes(2, "little")
    return bytes(out[:size])


def thumb_filters(out_offset: int) -> list[dict[str, int]]:
    """A ``Codec.LZMA_THUMB`` block's filter chain: the ARM-Thumb branch filter with
    the block's image offset as its start, then LZMA as ``LZMA_FILTERS``."""
    return [{"id": lzma.FILTER_ARMTHUMB, "start_offset": out_offset}, *LZMA_FILTERS]


class Encoding(enum.IntEnum):
    """BEGIN ``encoding`` values (only meaningful with a COMPRESSED or DELTA flag)."""

    RAW = 0
    DEFLATE_BLOCKS = 1  # this module's block stream


class Codec(enum.IntEnum):
    DEFLATE = 1  # raw deflate, RFC 1951, with an optional flash dictionary
    LZMA = 2  # raw LZMA1 (lc=0, lp=0, pb=0), end marker, no dictionary
    LZMA_THUMB = 3  # LZMA as above over the ARM-Thumb branch-filtered bytes (THUMB capability)


class DictSource(enum.IntEnum):
    NONE = 0
    OUTPUT = 1  # the new image's bytes already written, [dict_start, dict_start + dict_len)
    BASE = 2  # the running slot's image, [dict_start, dict_start + dict_len)


BLOCK_HEADER = Struct(
    "out_offset" / Int32ul,  # image offset of the block's first decoded byte
    "out_len" / Int32ul,  # decoded length, at most MAX_BLOCK
    "enc_len" / Int32ul,  # encoded bytes after this header
    "codec" / Int8ul,  # Codec
    "dict_source" / Int8ul,  # DictSource (DEFLATE only; 0 for LZMA)
    "dict_len" / Int16ul,  # dictionary length - 1 (so 32 KiB fits); 0 without dictionary
    "dict_start" / Int32ul,  # offset of the dictionary in its source
)
assert BLOCK_HEADER.sizeof() == HEADER_SIZE


@dataclass(frozen=True, slots=True)
class Block:
    out_offset: int
    out_len: int
    codec: Codec
    dict_source: DictSource
    dict_start: int
    dict_len: int
    payload: bytes  # the codec's encoded bytes

    def encode(self) -> bytes:
        return (
            bytes(
                BLOCK_HEADER.build(
                    {
                        "out_offset": self.out_offset,
                        "out_len": self.out_len,
                        "enc_len": len(self.payload),
                        "codec": int(self.codec),
                        "dict_source": int(self.dict_source),
                        "dict_len": max(0, self.dict_len - 1) if self.dict_len else 0,
                        "dict_start": self.dict_start,
                    }
                )
            )
            + self.payload
        )


def header_dict_len(source: int, stored: int) -> int:
    """The dictionary length a header means (stored as length - 1 so 32 KiB fits)."""
    return 0 if source == DictSource.NONE else stored + 1


@dataclass(frozen=True, slots=True)
class Encoded:
    """An image ready to go out encoded."""

    flags_delta: bool  # True: BEGIN sets DELTA (blocks may read the base slot)
    stream: bytes
    image_size: int
    image_sha256: bytes
    base_sha256: bytes  # the base image's hash for a delta; zeros otherwise
    block_ends: tuple[int, ...]  # stream offset after each block: where a resume may start
    out_ends: tuple[int, ...] = ()  # image offset after each block (same order)

    def image_offset(self, stream_offset: int) -> int:
        """The image bytes complete at a block boundary of the stream (0 at the start)."""
        if stream_offset in self.block_ends:
            return self.out_ends[self.block_ends.index(stream_offset)]
        return 0

    @property
    def stream_sha256(self) -> bytes:
        return hashlib.sha256(self.stream).digest()

    @property
    def ratio(self) -> float:
        return self.image_size / max(1, len(self.stream))


def _deflate(data: bytes, zdict: bytes) -> bytes:
    # Raw deflate (wbits -15): no zlib header or Adler-32; VERIFY's SHA-256 covers integrity.
    if zdict:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush()


def _dict_window(end: int, budget: int) -> tuple[int, int]:
    start = max(0, end - budget)
    return start, end - start


def compress(image: bytes, block_size: int = LZMA_BLOCK_SIZE, *, thumb: bool = False) -> Encoded:
    """LZMA blocks, each decodable on its own (its matches stay inside the block).

    With ``thumb`` (the MCU advertises THUMB) each block is also tried through the
    ARM-Thumb branch filter (``Codec.LZMA_THUMB``), and the smaller one goes out.
    """
    blocks = []
    for off in range(0, len(image), block_size):
        chunk = image[off : off + block_size]
        payload = lzma.compress(chunk, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        codec = Codec.LZMA
        if thumb:
            filtered = lzma.compress(chunk, format=lzma.FORMAT_RAW, filters=thumb_filters(off))
            if len(filtered) < len(payload):
                payload, codec = filtered, Codec.LZMA_THUMB
        blocks.append(Block(off, len(chunk), codec, DictSource.NONE, 0, 0, payload))
    return _assemble(blocks, image, delta_base=None)


def delta(base: bytes, image: bytes, block_size: int = BLOCK_SIZE) -> Encoded:
    """Deflate blocks whose dictionary is the best-matching region of ``base``.

    The region is found by anchoring: where in ``base`` do sampled 32-byte
    pieces of the block occur? Code moved by an edit shifts by the same amount
    for long stretches, so the previous block's shift is tried too. The block
    is also tried against the already-written output (new code compresses like
    plain compression), and the smallest wins.
    """
    index = _anchor_index(base)
    blocks = []
    shift = 0
    for off in range(0, len(image), block_size):
        chunk = image[off : off + block_size]
        budget = WINDOW - len(chunk)
        candidates: list[Block] = []
        starts = {_base_start(off + shift, budget, len(base))}
        for found in _anchor_shifts(index, image, off, len(chunk)):
            starts.add(_base_start(off + found, budget, len(base)))
        for start in sorted(starts):
            length = min(budget, len(base) - start)
            if length <= 0:
                continue
            payload = _deflate(chunk, base[start : start + length])
            candidates.append(
                Block(off, len(chunk), Codec.DEFLATE, DictSource.BASE, start, length, payload)
            )
        ostart, olen = _dict_window(off, budget)
        osrc = DictSource.OUTPUT if olen else DictSource.NONE
        candidates.append(
            Block(
                off,
                len(chunk),
                Codec.DEFLATE,
                osrc,
                ostart,
                olen,
                _deflate(chunk, image[ostart:off]),
            )
        )
        best = min(candidates, key=lambda b: len(b.payload))
        if best.dict_source is DictSource.BASE:
            shift = best.dict_start + best.dict_len // 2 - off - len(chunk) // 2
        blocks.append(best)
    return _assemble(blocks, image, delta_base=base)


_ANCHOR = 32
_ANCHOR_STEP = 512


def _anchor_index(base: bytes) -> dict[bytes, int]:
    # Every 16th offset of the base: a sampled 32-byte piece of the block lands on one.
    index: dict[bytes, int] = {}
    for i in range(0, len(base) - _ANCHOR, 16):
        index.setdefault(base[i : i + _ANCHOR], i)
    return index


def _anchor_shifts(index: dict[bytes, int], image: bytes, off: int, n: int) -> list[int]:
    shifts: dict[int, int] = {}
    for p in range(off, off + n - _ANCHOR - 16, _ANCHOR_STEP):
        for k in range(16):  # the base index is sampled every 16 bytes
            hit = index.get(image[p + k : p + k + _ANCHOR])
            if hit is not None:
                s = hit - (p + k)
                shifts[s] = shifts.get(s, 0) + 1
                break
    return [s for s, _ in sorted(shifts.items(), key=lambda kv: -kv[1])[:2]]


def _base_start(center: int, budget: int, base_len: int) -> int:
    # Centre the dictionary on where the block's bytes probably came from; the
    # end of the dictionary is the nearest history, so lean it past the block.
    start = center - budget // 2
    return max(0, min(start, max(0, base_len - budget)))


def _assemble(blocks: list[Block], image: bytes, delta_base: bytes | None) -> Encoded:
    parts = []
    ends = []
    pos = 0
    for b in blocks:
        enc = b.encode()
        parts.append(enc)
        pos += len(enc)
        ends.append(pos)
    return Encoded(
        out_ends=tuple(b.out_offset + b.out_len for b in blocks),
        flags_delta=delta_base is not None,
        stream=b"".join(parts),
        image_size=len(image),
        image_sha256=hashlib.sha256(image).digest(),
        base_sha256=hashlib.sha256(delta_base).digest() if delta_base is not None else bytes(32),
        block_ends=tuple(ends),
    )


#: An image whose first LZMA block shrinks less than this is sent raw: running
#: the encoder over a whole incompressible (say, encrypted) image is wasted CPU.
_MIN_PROBE_RATIO = 1.05


class DecodeError(Exception):
    """A block stream that does not decode; ``status`` names why (a wire Status name)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@functools.lru_cache(maxsize=16)
def _probe_ratio(probe: bytes) -> float:
    """How well the image's first block compresses. Remembered: a gateway flashes one
    release to many MCUs, and each would otherwise pay the same LZMA run again."""
    return compress(probe).ratio


def choose(
    caps: int, image: bytes, base: bytes | None, base_in_slot: bool, *, allow: bool = True
) -> Encoded | None:
    """The smallest stream this MCU can decode, or None for a raw transfer.

    ``caps`` are HELLO's capability bits; ``base`` is the image the gateway
    believes the fallback slot holds (from its cache) and ``base_in_slot`` says
    INFO confirmed it by SHA-256. Raw wins when encoding would not save bytes.
    """
    from protocols.mcugw.constants import Capability  # local: keep this module's import light

    if not allow or not caps & Capability.COMPRESS:
        return None
    options = []
    if len(image) <= LZMA_BLOCK_SIZE or _probe_ratio(image[:LZMA_BLOCK_SIZE]) >= _MIN_PROBE_RATIO:
        options.append(compress(image, thumb=bool(caps & Capability.THUMB)))
    if base is not None and base_in_slot and caps & Capability.DELTA:
        options.append(delta(base, image))
    if not options:
        return None
    best = min(options, key=lambda e: len(e.stream))
    return best if len(best.stream) < len(image) else None


def parse_stream(
    stream: bytes, image_size: int, image_sha256: bytes, base_sha256: bytes | None
) -> Encoded:
    """Check a published stream's block structure and wrap it for sending.

    Only the structure is checked (headers chain from 0 to ``image_size``);
    whether it decodes to the image is the MCU's VERIFY, against the signed hash.
    """
    ends = []
    out_ends = []
    pos = out = 0
    while pos < len(stream):
        if len(stream) - pos < HEADER_SIZE:
            raise DecodeError("DECODE_ERROR", f"stream ends inside a block header at {pos}")
        h = BLOCK_HEADER.parse(stream[pos : pos + HEADER_SIZE])
        if h.out_offset != out or not 0 < h.out_len <= MAX_BLOCK:
            raise DecodeError("DECODE_ERROR", f"block at stream offset {pos} is out of order")
        pos += HEADER_SIZE + h.enc_len
        out += h.out_len
        if pos > len(stream) or out > image_size:
            raise DecodeError("DECODE_ERROR", f"block at image offset {h.out_offset} overruns")
        ends.append(pos)
        out_ends.append(out)
    if out != image_size:
        raise DecodeError("BLOCK_LENGTH", f"stream decodes to {out} bytes, image is {image_size}")
    return Encoded(
        flags_delta=base_sha256 is not None,
        stream=stream,
        image_size=image_size,
        image_sha256=image_sha256,
        base_sha256=base_sha256 or bytes(32),
        block_ends=tuple(ends),
        out_ends=tuple(out_ends),
    )

"""The virtual MCU's block-stream decoder (docs/protocol.md §17).

A real part inflates each block straight into its page buffer, taking
back-references from the memory-mapped flash (the new slot's written bytes, or
the base image in the fallback slot), so its RAM is the inflate state plus one
page: see ``DECODER_RAM`` below. The simulator buffers one block's encoded bytes
(at most one block plus a header) and decodes with zlib, which reads the same
dictionary the MCU would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocols.mcugw.constants import Status
from protocols.mcugw.encoding import (
    BLOCK_HEADER,
    BLOCK_SIZE,
    HEADER_SIZE,
    MAX_BLOCK,
    WINDOW,
    Codec,
    DecodeError,
    DictSource,
    decode_block,
    header_dict_len,
)

#: RAM of the MCU decoders, bytes (documented in §17.4); one is active at a time,
#: and neither has a window in RAM (matches read the memory-mapped slots).
#: LZMA: 2614 u16 probabilities (lc=lp=pb=0) + range coder and match state;
#: inflate: tinf-style Huffman tables, 2 x (16 + 288) u16 + bit state. Both
#: add one block header and one program page (512 B, the largest of our models).
DECODER_RAM = {
    "lzma": {"probabilities": 2614 * 2, "state": 64, "header": HEADER_SIZE, "page": 512},
    "inflate": {"tables": 1280, "header": HEADER_SIZE, "page": 512},
}


@dataclass
class Decoded:
    out_offset: int
    data: bytes
    stream_end: int  # stream offset just after this block


class BlockStreamDecoder:
    """Turns DATA bytes (in stream order) into decoded blocks, checking every header."""

    def __init__(
        self,
        *,
        image_size: int,
        stream_start: int,
        delta: bool,
        read_output: Callable[[int, int], bytes],
        read_base: Callable[[int, int], bytes],
        base_size: int,
    ) -> None:
        self.image_size = image_size
        self.delta = delta
        self._read_output = read_output
        self._read_base = read_base
        self._base_size = base_size
        self._buf = bytearray()
        self._pos = stream_start  # stream offset of _buf[0]; always a block boundary
        self.next_out: int | None = None  # image offset the next block must start at

    def feed(self, data: bytes) -> Iterator[Decoded]:
        """Decode the blocks ``data`` completes, one at a time; raise DecodeError on a bad one.

        Lazy on purpose: the caller programs each block before the next is
        decoded, since that one may take back-references into it.
        """
        self._buf += data
        while len(self._buf) >= HEADER_SIZE:
            h = BLOCK_HEADER.parse(bytes(self._buf[:HEADER_SIZE]))
            self._check_header(h)  # before buffering: a bad header never fills RAM
            total = HEADER_SIZE + h.enc_len
            if len(self._buf) < total:
                break
            zdict = self._dictionary(h)
            payload = bytes(self._buf[HEADER_SIZE:total])
            block = decode_block(h.codec, payload, zdict, h.out_len)
            del self._buf[:total]
            self._pos += total
            self.next_out = h.out_offset + h.out_len
            yield Decoded(h.out_offset, block, self._pos)

    def _check_header(self, h: object) -> None:
        out_offset: int = h.out_offset  # type: ignore[attr-defined]
        out_len: int = h.out_len  # type: ignore[attr-defined]
        if self.next_out is not None and out_offset != self.next_out:
            raise DecodeError(
                Status.DECODE_ERROR.name,
                f"block at image offset {out_offset}, expected {self.next_out}",
            )
        end = out_offset + out_len
        if out_offset % BLOCK_SIZE or not 0 < out_len <= MAX_BLOCK or end > self.image_size:
            raise DecodeError(
                Status.DECODE_ERROR.name, f"block {out_offset}+{out_len} outside the image"
            )
        if end % BLOCK_SIZE and end != self.image_size:
            raise DecodeError(Status.DECODE_ERROR.name, f"block ends off the grid at {end}")
        enc_len: int = h.enc_len  # type: ignore[attr-defined]
        if enc_len > out_len + out_len // 8 + 64:
            # More than any encoder emits for this many bytes: refuse before buffering it.
            raise DecodeError(Status.DECODE_ERROR.name, f"block of {enc_len} encoded bytes")
        codec: int = h.codec  # type: ignore[attr-defined]
        if codec == Codec.LZMA and h.dict_source != DictSource.NONE:  # type: ignore[attr-defined]
            raise DecodeError(Status.DECODE_ERROR.name, "LZMA blocks take no dictionary")

    def _dictionary(self, h: object) -> bytes:
        source: int = h.dict_source  # type: ignore[attr-defined]
        start: int = h.dict_start  # type: ignore[attr-defined]
        length = header_dict_len(source, h.dict_len)  # type: ignore[attr-defined]
        out_offset: int = h.out_offset  # type: ignore[attr-defined]
        if length > WINDOW:
            raise DecodeError(Status.DECODE_ERROR.name, f"dictionary of {length} bytes")
        if source == DictSource.NONE:
            return b""
        if source == DictSource.OUTPUT:
            if start + length > out_offset:
                raise DecodeError(
                    Status.DECODE_ERROR.name, "dictionary reaches past the written image"
                )
            return self._read_output(start, length)
        if source == DictSource.BASE:
            if not self.delta:
                raise DecodeError(Status.PATCH_REJECTED.name, "base read in a non-delta transfer")
            if start + length > self._base_size:
                raise DecodeError(
                    Status.PATCH_REJECTED.name,
                    f"delta reads base bytes {start}..{start + length}, base is "
                    f"{self._base_size} bytes",
                )
            return self._read_base(start, length)
        raise DecodeError(Status.DECODE_ERROR.name, f"unknown dictionary source {source}")

"""The virtual MCU's block-stream decoder (docs/protocol.md §17).

A real part decodes each block straight into its page buffer as DATA arrives,
taking back-references from the memory-mapped flash (the new slot's written
bytes, or the base image in the fallback slot), so its RAM is the decoder state
plus one page: see ``DECODER_RAM`` below. The simulator streams the same way
(zlib and liblzma decompressors fed frame by frame, output programmed in whole
write units), with the dictionary read from the simulated flash.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from protocols.mcugw.constants import Status
from protocols.mcugw.encoding import (
    BLOCK_HEADER,
    BLOCK_SIZE,
    HEADER_SIZE,
    LZMA_FILTERS,
    MAX_BLOCK,
    WINDOW,
    Codec,
    DecodeError,
    DictSource,
    header_dict_len,
    thumb_unfilter,
)

#: RAM of the MCU decoders, bytes (§17.4), measured on the C reference
#: bootloader's Cortex-M3 build by ``python -m bench.c_decoders``: the codec's
#: state (``sizeof(bl_lzma_t)``, ``sizeof(bl_inflate_t)``), the rest of
#: ``bl_dec_t`` (512 B page, block header, stream state) and the decode path's
#: stack (``-fstack-usage``). Neither has a window in RAM (matches read flash).
DECODER_RAM = {
    "lzma": {"state": 3600, "page_header_stream": 608, "stack": 264},
    "inflate": {"state": 1060, "page_header_stream": 608, "stack": 264},
}


@dataclass
class Piece:
    """Decoded bytes ready to program: a multiple of the write size, or a block's tail."""

    out_offset: int
    data: bytes
    codec: int
    stream_end: int | None  # set on a block's last piece: the stream offset after the block


class _Block:
    """One block being decoded: its header, its decompressor and how far it has got."""

    def __init__(self, h: Any, zdict: bytes) -> None:
        self.h = h
        self.consumed = 0  # encoded bytes fed
        self.produced = 0  # decoded bytes out
        self.pending = bytearray()  # decoded, not yet a whole write unit (the page buffer)
        self.emitted = 0  # decoded bytes handed out as pieces
        self.decided = 0  # LZMA_THUMB: block offset below which BL pairs are un-filtered
        if h.codec in (Codec.LZMA, Codec.LZMA_THUMB):
            # LZMA_THUMB: liblzma gives the filtered bytes and this class un-filters them
            # as the C decoder does, so `produced` counts the same bytes (§17.2 statuses).
            self.lz: lzma.LZMADecompressor | None = lzma.LZMADecompressor(
                format=lzma.FORMAT_RAW, filters=LZMA_FILTERS
            )
            self.zl: Any = None
        else:
            self.lz = None
            self.zl = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)

    def ended(self) -> bool:
        """The codec has read its end mark (LZMA's, or DEFLATE's final block)."""
        return bool(self.lz.eof if self.lz is not None else self.zl.eof)

    def decode(self, chunk: bytes) -> bytes:
        """Decode the next encoded bytes; every codec exception is mapped by the caller."""
        if self.ended():
            # The end mark came before enc_len: the rest is garbage (liblzma would
            # raise EOFError here, zlib would hide it in unused_data).
            raise DecodeError(Status.DECODE_ERROR.name, _AFTER_END_MARK)
        room = self.h.out_len - self.produced + 1  # one byte more reveals an overlong block
        if self.lz is not None:
            out = self.lz.decompress(chunk, room)
        else:
            out = self.zl.decompress(chunk, room)
        self.produced += len(out)
        if self.produced > self.h.out_len:
            raise DecodeError(
                Status.BLOCK_LENGTH.name,
                f"block at {self.h.out_offset} decodes past its {self.h.out_len} bytes",
            )
        if self.ended() and (self.lz.unused_data if self.lz is not None else self.zl.unused_data):
            raise DecodeError(Status.DECODE_ERROR.name, _AFTER_END_MARK)
        return out

    def ready(self, done: bool) -> int:
        """How many bytes at the front of ``pending`` are final (LZMA_THUMB holds back the
        bytes whose BL pair is not decided yet)."""
        if self.h.codec != Codec.LZMA_THUMB:
            return len(self.pending)
        start = self.emitted
        self.decided = (
            thumb_unfilter(self.pending, self.decided - start, self.h.out_offset + start, done)
            + start
        )
        return len(self.pending) if done else self.decided - start

    def finish(self) -> None:
        if not self.ended():
            if self.produced < self.h.out_len:
                raise DecodeError(
                    Status.BLOCK_LENGTH.name,
                    f"block at {self.h.out_offset} ends after {self.produced} of "
                    f"{self.h.out_len} bytes",
                )
            raise DecodeError(Status.DECODE_ERROR.name, "encoded block ends without its end mark")
        if self.produced != self.h.out_len:
            raise DecodeError(
                Status.BLOCK_LENGTH.name,
                f"block at {self.h.out_offset} decodes to {self.produced} bytes, "
                f"not {self.h.out_len}",
            )


_AFTER_END_MARK = "encoded bytes after the block's end mark (enc_len too long)"


class BlockStreamDecoder:
    """Decodes DATA bytes as they arrive, like an MCU: no block is ever buffered whole.

    Each header is checked before its block starts; decoded bytes come out in
    whole write units (the rest waits in the page buffer) so they can be
    programmed at once, overlapping the transfer as on a real part.
    """

    def __init__(
        self,
        *,
        image_size: int,
        stream_start: int,
        delta: bool,
        read_output: Callable[[int, int], bytes],
        read_base: Callable[[int, int], bytes],
        base_size: int,
        align: int = 1,
        resume_grid: int = BLOCK_SIZE,
    ) -> None:
        self.image_size = image_size
        self.delta = delta
        self._read_output = read_output
        self._read_base = read_base
        self._base_size = base_size
        self._align = max(1, align)
        self._header = bytearray()
        self._block: _Block | None = None
        self._pos = stream_start  # stream offset of the next byte fed
        # Image offset the next block must start at (§17.1: 0 for the first block). A
        # resumed stream restarts at a checkpoint, a block that begins on a sector
        # (§17.3), as the C decoder checks it: resume_grid is the sector size.
        self.next_out: int | None = 0 if stream_start == 0 else None
        self._resume_grid = resume_grid
        self.failed: DecodeError | None = None

    def feed(self, data: bytes) -> Iterator[Piece]:
        """Decode ``data``; yield pieces to program, lazily (a later block may read them).

        Every failure is a :class:`DecodeError` naming a §17.2 status: whatever
        else the codecs or the header parser raise on hostile bytes (liblzma's
        EOFError, zlib.error, a MemoryError ...) is mapped here, in one place,
        so no stream can take the MCU down.
        """
        if self.failed is not None:
            raise self.failed  # a stream that failed once stays failed
        try:
            yield from self._feed(data)
        except DecodeError as exc:
            self.failed = exc
            raise
        except Exception as exc:  # hostile input must never kill the MCU
            self.failed = DecodeError(
                Status.DECODE_ERROR.name, f"block data invalid: {type(exc).__name__}: {exc}"
            )
            raise self.failed from exc

    def _feed(self, data: bytes) -> Iterator[Piece]:
        i = 0
        while i < len(data):
            block = self._block
            if block is None:
                take = min(HEADER_SIZE - len(self._header), len(data) - i)
                self._header += data[i : i + take]
                i += take
                self._pos += take
                if len(self._header) == HEADER_SIZE:
                    h = BLOCK_HEADER.parse(bytes(self._header))
                    self._header.clear()
                    self._check_header(h)
                    self._block = _Block(h, self._dictionary(h))
                continue
            take = min(block.h.enc_len - block.consumed, len(data) - i)
            block.pending += block.decode(data[i : i + take])
            block.consumed += take
            i += take
            self._pos += take
            done = block.consumed == block.h.enc_len
            if done:
                block.finish()
                self._block = None
                self.next_out = block.h.out_offset + block.h.out_len
                cut = block.ready(True)
            else:
                cut = block.ready(False)
                cut -= cut % self._align
            if cut or done:
                piece = bytes(block.pending[:cut])
                del block.pending[:cut]
                offset = block.h.out_offset + block.emitted
                block.emitted += len(piece)
                yield Piece(offset, piece, block.h.codec, self._pos if done else None)

    def _check_header(self, h: object) -> None:
        out_offset: int = h.out_offset  # type: ignore[attr-defined]
        out_len: int = h.out_len  # type: ignore[attr-defined]
        if self.next_out is not None and out_offset != self.next_out:
            raise DecodeError(
                Status.DECODE_ERROR.name,
                f"block at image offset {out_offset}, expected {self.next_out}",
            )
        if self.next_out is None and out_offset % self._resume_grid:
            raise DecodeError(
                Status.DECODE_ERROR.name,
                f"resumed at a block at image offset {out_offset}, not on a sector",
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
        if codec not in (Codec.DEFLATE, Codec.LZMA, Codec.LZMA_THUMB):
            raise DecodeError(Status.DECODE_ERROR.name, f"unknown codec {codec}")
        if codec != Codec.DEFLATE and h.dict_source != DictSource.NONE:  # type: ignore[attr-defined]
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

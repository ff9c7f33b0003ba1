"""One image upload over SMP: chunking, the window of chunks in flight, and
following the offsets the device names (resume, correction, restart after a reset).

Sans policy: the driver decides the image number and the window; this module
only moves the bytes and keeps the counts.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

from protocols.driver import Progress, ProgressFn, Step
from protocols.mcuboot import client as smp
from protocols.mcuboot.errors import SmpProtocolError, SmpTimeout, VerifyError
from protocols.mcuboot.link import SmpLink

FRAME_OVERHEAD = 4  # length + CRC16 share the device's reassembly buffer
WRITE_UNIT = 8  # chunks are multiples of the largest usual flash write size (BOOT_MAX_ALIGN)


class Upload:
    """Upload one image: into image N's secondary slot (the primary in serial recovery)."""

    def __init__(self, link: SmpLink, *, image: int, window: int) -> None:
        self.link = link
        self.timing = link.timing
        self.image = image
        self.window = window
        self.restarts = 0  # uploads started over after the device lost them

    def _chunk(self, off: int, data: bytes) -> tuple[int, Callable[[int], bytes]]:
        """The largest chunk at ``off`` that fits the device's buffer, and its builder."""
        room = self.link.buf_size - FRAME_OVERHEAD
        first = off == 0
        sha = hashlib.sha256(data).digest() if first else b""
        image = self.image

        def build(seq: int, n: int) -> bytes:
            piece = data[off : off + n]
            if first:
                return smp.upload(seq, 0, piece, total=len(data), sha=sha, image=image)
            return smp.upload(seq, off, piece)

        empty = len(build(0, 0))
        n = room - empty
        n -= smp.cbor_bytes_overhead(n)
        # Whole flash write units: MCUboot's serial recovery programs only those and
        # asks again for the rest (boot_serial.c bs_upload).
        n -= n % WRITE_UNIT
        n = max(1, min(n, len(data) - off))
        return n, lambda seq: build(seq, n)

    @staticmethod
    def _answered_off(body: dict[str, Any], total: int) -> int:
        off = body.get("off")
        if not isinstance(off, int) or not 0 <= off <= total:
            raise SmpProtocolError(f"upload answer names offset {off!r} of {total}")
        return off

    async def _first_chunk(self, data: bytes, progress: ProgressFn) -> tuple[int, int]:
        """Send the chunk at offset 0 alone (the device erases, or names the offset of an
        earlier session of this image); returns (offset the device names, chunk length)."""
        total = len(data)
        n, build = self._chunk(0, data)
        body = await self.link.call(build, "image upload at 0", extra_s=self.timing.erase_s)
        off = self._answered_off(body, total)
        progress(Progress(Step.WRITE, off, total))
        if off == total and body.get("match") is False:
            raise VerifyError("the device's SHA-256 of the uploaded image does not match")
        return off, n

    async def run(self, data: bytes, progress: ProgressFn) -> tuple[int, int]:
        """Upload image N (its secondary slot; the primary in serial recovery); returns
        (bytes sent, offset resumed from).

        The first chunk goes alone (:meth:`_first_chunk`). Then up to ``window``
        chunks are in flight. Every answer names the device's offset; when it is not
        the end of the chunk answered, the chunks in flight are dropped and sending
        goes on from the device's offset. Offset 0 there means the device reset and
        lost the upload (Zephyr's img_mgmt answers a chunk it has no session for with
        offset 0): the upload starts over with a first chunk, a bounded number of
        times. A lost or damaged answer restarts from the last confirmed offset, a
        bounded number of times in a row.
        """
        total = len(data)
        link = self.link
        progress(Progress(Step.WRITE, 0, total))
        off, n = await self._first_chunk(data, progress)
        resumed = off if off > n else 0  # the device kept an earlier session of this image
        sent = n if off == n else 0
        window = self.window
        flight: deque[tuple[int, int, int, int]] = deque()  # seq, off, length, wire bytes
        next_off = off
        failures = 0
        while off < total:
            while len(flight) < window and next_off < total:
                n, build = self._chunk(next_off, data)
                seq, size = await link.send(build)
                flight.append((seq, next_off, n, size))
                next_off += n
            try:
                reply = await link.receive(link.limit(sum(f[3] for f in flight), 0, len(flight)))
            except SmpTimeout:
                reply = None
            if reply is None:
                failures += 1
                if failures > self.timing.retries:
                    raise SmpTimeout(
                        f"image upload at {off}: no clean answer after {failures} attempts"
                    )
                link.retransmits += len(flight)
                link.give_up()
                flight.clear()
                next_off = off
                continue
            body = smp.check(reply, f"image upload at {off}")
            answered = next((f for f in flight if f[0] == reply.header.seq), None)
            if answered is None:
                raise SmpProtocolError(f"upload answer for seq {reply.header.seq} not in flight")
            new_off = self._answered_off(body, total)
            failures = 0
            if new_off == answered[1] + answered[2]:
                flight.remove(answered)
                sent += answered[2]
            elif new_off == 0:  # the device reset and lost the upload: start over
                link.give_up()
                flight.clear()
                self.restarts += 1
                if self.restarts > self.timing.retries:
                    raise SmpProtocolError(
                        f"image upload: the device lost the upload {self.restarts} times "
                        "(it keeps resetting)"
                    )
                new_off, n = await self._first_chunk(data, progress)
                sent += n if new_off == n else 0
                next_off = new_off
            else:  # the device is elsewhere: continue from where it says
                link.give_up()
                flight.clear()
                next_off = new_off
            off = new_off
            progress(Progress(Step.WRITE, off, total))
            if off == total and body.get("match") is False:
                raise VerifyError("the device's SHA-256 of the uploaded image does not match")
        link.give_up()  # answers to chunks past the end (none are sent) or corrected ones
        return sent, resumed

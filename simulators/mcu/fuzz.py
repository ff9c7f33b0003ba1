"""Seeded hostile input for the MCU's request path and the host's decoder.

:func:`fuzz_mcu` plays a hostile host: CRC-valid frames whose payloads are
random, or plausible requests with hostile values (DATA of any length at any
offset, overlapping and out of order; BEGIN of odd sizes; resets; aborts). The
rule it checks (docs/protocol.md §6): every request that decodes gets an
answer with its seq and a status, and the MCU keeps running; a frame whose
payload does not decode is dropped. :func:`fuzz_decoder` feeds the host's
client damaged and random bytes and checks it only ever yields events.

Both are bounded by ``count``; the tests run a few thousand cases, the
benchmark (``python -m bench.fuzz``) millions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from protocols.errors import FrameError
from protocols.mcugw.client import ClientProtocol
from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.constants import BeginFlags, Opcode, ResetMode, SlotState, Status
from protocols.mcugw.encoding import (
    BLOCK_SIZE,
    HEADER_SIZE,
    Encoding,
    compress,
    delta,
    thumb_code,
)
from protocols.mcugw.framing import encode_frame
from protocols.mcugw.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    ConfirmRequest,
    DataAck,
    DataRequest,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    Message,
    ResetRequest,
    SetBaudRequest,
    VerifyRequest,
    decode_payload,
    encode_payload,
)
from simulators.mcu.core import McuCore, RunState, _synthetic_image
from simulators.mcu.flash import Flash
from simulators.mcu.models import McuModel
from simulators.mcu.options import SUPPORTED_BAUDS

#: Virtual seconds a request may take to be answered (a full-slot VERIFY fits).
_ANSWER_WAIT_S = 5.0


class FuzzFailure(AssertionError):
    """A hostile input broke the rule; the message names the seed and the case."""


@dataclass
class FuzzReport:
    frames: int = 0
    answered: int = 0
    dropped: int = 0  # did not decode: dropped by design
    statuses: dict[str, int] = field(default_factory=dict)


def _hostile_message(rng: random.Random, model: McuModel, size: int) -> Message:
    """A request with values meant to hurt: the DATA path gets most of them."""
    roll = rng.random()
    w = model.write_size
    if roll < 0.6:
        grid = rng.random() < 0.5
        offset = rng.randrange(0, size + 64)
        if grid:
            offset -= offset % w
        length = rng.choice([1, w - 1, w, w + 1, rng.randrange(1, model.max_data + 8)])
        return DataRequest(offset, rng.randbytes(max(1, length)))
    if roll < 0.7:
        return BeginRequest(
            rng.choice([size, size, 0, 1, rng.randrange(0, 2**32)]),
            hashlib.sha256(rng.randbytes(4)).digest(),
            rng.choice(["2.0.0", "", "x" * rng.randrange(0, 100)]),
        )
    choices: list[Message] = [
        HelloRequest(rng.randrange(256), rng.randrange(256)),
        InfoRequest(),
        VerifyRequest(),
        ActivateRequest(),
        ConfirmRequest(),
        AbortRequest(),
        ResetRequest(ResetMode.STAY),
        SetBaudRequest(rng.choice([*SUPPORTED_BAUDS[:3], rng.randrange(2**32)])),
    ]
    return rng.choice(choices)


def hostile_frames(rng: random.Random, model: McuModel, size: int) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) pairs: mostly hostile requests, some raw random payloads."""
    while True:
        if rng.random() < 0.15:
            opcode = rng.choice([*(int(o) for o in Opcode), 0x00, 0x0B, 0x7F, rng.randrange(256)])
            yield opcode, rng.randbytes(rng.randrange(0, 48))
        else:
            yield encode_payload(_hostile_message(rng, model, size))


class _Host:
    def __init__(self, core: McuCore) -> None:
        self.core = core
        self.codec = Codec()
        self.now = 0.0
        self.seq = 0

    def send(self, opcode: int, payload: bytes) -> tuple[int, list[PacketReceived]]:
        self.seq = (self.seq + 1) & 0xFFFF
        self.core.receive(self.now, encode_frame(opcode, self.seq, payload))
        answers: list[PacketReceived] = []
        end = self.now + _ANSWER_WAIT_S
        while (deadline := self.core.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.core.advance(self.now)
            for _, data in self.core.take_output(self.now):
                self.codec.receive_data(data)
            while (ev := self.codec.next_event()) is not None:
                if isinstance(ev, PacketReceived):
                    answers.append(ev)
            if any(a.seq == self.seq for a in answers) and self.core.state is not RunState.BOOTING:
                break
        return self.seq, answers


def fuzz_mcu(model: McuModel, seed: int, count: int) -> FuzzReport:
    """Send ``count`` hostile frames to a fresh MCU; raise FuzzFailure on a broken rule."""
    rng = random.Random(seed)
    core = McuCore(model, Flash(model), b"\xf0\x22", None)
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    host = _Host(core)
    report = FuzzReport()
    size = rng.choice([model.write_size * 3 + 1, 3 * model.sector_size - 5, 8192])
    plan = hostile_frames(rng, model, size)
    # Into the bootloader with a transfer open, so DATA reaches the flash.
    script: list[tuple[int, bytes]] = [
        encode_payload(ResetRequest(ResetMode.STAY)),
        encode_payload(BeginRequest(size, b"\x5a" * 32, "2.0.0")),
    ]
    for i in range(count):
        opcode, payload = script[i] if i < len(script) else next(plan)
        try:
            request = decode_payload(opcode, payload)
        except FrameError:
            request = None
        if request is not None and hasattr(request, "status"):
            request = None  # a response sent to the MCU: ignored like garbage
        try:
            seq, answers = host.send(opcode, payload)
        except Exception as exc:
            raise FuzzFailure(
                f"seed {seed}, frame {i}: opcode 0x{opcode:02x} payload {payload.hex()} "
                f"made the MCU raise {exc!r}"
            ) from exc
        report.frames += 1
        mine = [a for a in answers if a.seq == seq]
        if request is None:
            report.dropped += 1
            continue
        if not mine:
            raise FuzzFailure(f"seed {seed}, frame {i}: no answer to {request}")
        status = getattr(mine[-1].message, "status", None)
        if status is None:
            raise FuzzFailure(f"seed {seed}, frame {i}: answer without status to {request}")
        report.answered += 1
        report.statuses[status.name] = report.statuses.get(status.name, 0) + 1
        # Keep most frames aimed at an open transfer: back into the bootloader, re-BEGIN.
        if core.state is RunState.APP and rng.random() < 0.5:
            host.send(*encode_payload(ResetRequest(ResetMode.STAY)))
        elif core.session is None and rng.random() < 0.3:
            host.send(*encode_payload(BeginRequest(size, b"\x5a" * 32, "2.0.0")))
    return report


def fuzz_decoder(seed: int, count: int, samples: list[bytes]) -> int:
    """Feed the host client ``count`` damaged streams built from ``samples``; returns bytes fed.

    Each stream is a valid frame mutated (bit flips, cuts, splices, inserted
    delimiters) or plain random bytes, delivered in random pieces. The client
    must turn every one into events without raising.
    """
    rng = random.Random(seed)
    client = ClientProtocol()
    fed = 0
    for i in range(count):
        stream = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(0, 4)):
            op = rng.randrange(5)
            if op == 0 and stream:
                stream[rng.randrange(len(stream))] ^= 1 << rng.randrange(8)
            elif op == 1 and stream:
                del stream[rng.randrange(len(stream)) :]
            elif op == 2:
                stream[rng.randrange(len(stream) + 1) : 0] = rng.choice(samples)
            elif op == 3:
                stream.insert(rng.randrange(len(stream) + 1), 0)
            else:
                stream = bytearray(rng.randbytes(rng.randrange(1, 300)))
        data = bytes(stream)
        try:
            pos = 0
            while pos < len(data):
                step = rng.randrange(1, 64)
                client.receive_data(data[pos : pos + step])
                pos += step
                while client.next_event() is not None:
                    pass
        except Exception as exc:
            raise FuzzFailure(
                f"seed {seed}, stream {i}: {data.hex()} made the client raise {exc!r}"
            ) from exc
        fed += len(data)
    return fed


#: What a DATA of a hostile block stream may be answered with (§17.2, §9.3).
STREAM_STATUSES = frozenset(
    {Status.OK, Status.BUSY, Status.GAP, Status.DECODE_ERROR, Status.BLOCK_LENGTH,
     Status.PATCH_REJECTED}
)  # fmt: skip


@dataclass
class StreamFuzzReport:
    streams: int = 0
    frames: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # how each stream ended
    kinds: dict[str, int] = field(default_factory=dict)


def _blocks(stream: bytes) -> list[tuple[int, int]]:
    """(header offset, enc_len) of each block of a well-formed stream."""
    out, pos = [], 0
    while pos + HEADER_SIZE <= len(stream):
        enc_len = int.from_bytes(stream[pos + 8 : pos + 12], "little")
        out.append((pos, enc_len))
        pos += HEADER_SIZE + enc_len
    return out


def _with_enc_len(stream: bytearray, at: int, enc_len: int) -> None:
    stream[at + 8 : at + 12] = enc_len.to_bytes(4, "little")


def hostile_stream(rng: random.Random, valid: list[bytes]) -> tuple[str, bytes, list[int]]:
    """(kind, stream, offsets where its DATA frames must split) from a valid stream.

    Kinds: ``early_end`` (a block's end mark before its enc_len, the rest in a
    later frame), ``late_end`` (enc_len short of the end mark), ``mutated``
    (bytes flipped, cut or spliced), ``random``; and ``valid``, split anywhere.
    """
    src = bytearray(rng.choice(valid))
    blocks = _blocks(bytes(src))
    roll = rng.random()
    at, enc_len = rng.choice(blocks)
    end_mark = at + HEADER_SIZE + enc_len
    if roll < 0.35:
        extra = rng.randbytes(rng.choice([1, 2, 7, rng.randrange(1, 200)]))
        _with_enc_len(src, at, enc_len + len(extra))
        src[end_mark:end_mark] = extra
        return "early_end", bytes(src), [end_mark, end_mark + rng.randrange(len(extra) + 1)]
    if roll < 0.5:
        cut = rng.randrange(1, min(enc_len, 64) + 1)
        _with_enc_len(src, at, enc_len - cut)
        return "late_end", bytes(src), [end_mark - cut, end_mark]
    if roll < 0.85:
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0:
                src[rng.randrange(len(src))] ^= 1 << rng.randrange(8)
            elif op == 1:
                src[rng.randrange(len(src))] = rng.randrange(256)
            elif op == 2 and len(src) > 1:
                del src[rng.randrange(1, len(src)) :]
            else:
                i = rng.randrange(len(src) + 1)
                src[i:i] = rng.randbytes(rng.randrange(1, 40))
        return "mutated", bytes(src), [end_mark]
    if roll < 0.92:
        return "random", rng.randbytes(rng.randrange(1, 3000)), []
    return "valid", bytes(src), [end_mark]


def _frames(
    rng: random.Random, total: int, start: int, splits: list[int], max_data: int
) -> list[tuple[int, int]]:
    """DATA (offset, length) pieces from ``start``: random sizes, plus every forced split."""
    cuts = {s for s in splits if start < s < total}
    pos = start
    while pos < total:
        pos = min(total, pos + rng.choice([1, 3, 17, rng.randrange(1, max_data + 1), max_data]))
        cuts.add(pos)
    out, prev = [], start
    for cut in sorted(cuts):
        while cut - prev > max_data:
            out.append((prev, max_data))
            prev += max_data
        out.append((prev, cut - prev))
        prev = cut
    return out


def fuzz_block_streams(model: McuModel, seed: int, count: int) -> StreamFuzzReport:
    """Send ``count`` hostile block streams to a fresh MCU, each split across DATA frames.

    The rule (docs/protocol.md §17.2): every DATA is answered with a status of
    :data:`STREAM_STATUSES`, the MCU keeps running (HELLO answered after every
    stream), and the factory app keeps booting from its slot.
    """
    rng = random.Random(seed)
    core = McuCore(model, Flash(model), b"\xf0\x23", None)
    core.install_initial_app("1.0.0")
    core.power_on(0.0)
    host = _Host(core)
    base = _synthetic_image("1.0.0")
    patched = base[: len(base) // 2] + rng.randbytes(100) + base[len(base) // 2 :]
    patched = patched[: min(len(patched), model.slot_size)]
    code = thumb_code(rng, min(20 * 1024, model.slot_size))
    valid = [compress(patched).stream, compress(patched, BLOCK_SIZE).stream]
    thumb = [compress(code, thumb=True).stream, compress(code, BLOCK_SIZE, thumb=True).stream]
    deltas = [delta(base, patched).stream]
    report = StreamFuzzReport()

    def ask(req: Message, what: str) -> Message:
        seq, answers = host.send(*encode_payload(req))
        mine = [a.message for a in answers if a.seq == seq]
        if not mine:
            raise FuzzFailure(f"seed {seed}, stream {report.streams}: no answer to {what}")
        return mine[-1]

    host.send(*encode_payload(ResetRequest(ResetMode.STAY)))
    for _ in range(count):
        roll = rng.random()
        is_delta, is_thumb = roll < 0.3, roll >= 0.7
        kind, stream, splits = hostile_stream(
            rng, deltas if is_delta else thumb if is_thumb else valid
        )
        report.kinds[kind] = report.kinds.get(kind, 0) + 1
        image = code if is_thumb else patched
        flags = BeginFlags.COMPRESSED | (BeginFlags.DELTA if is_delta else BeginFlags.NONE)
        begin = ask(
            BeginRequest(
                size=len(image),
                sha256=hashlib.sha256(image).digest(),
                version="2.0.0",
                flags=flags,
                encoding=Encoding.DEFLATE_BLOCKS,
                stream_size=len(stream),
                stream_sha256=hashlib.sha256(stream).digest(),
                base_sha256=hashlib.sha256(base).digest() if is_delta else bytes(32),
            ),
            "BEGIN",
        )
        if not isinstance(begin, BeginResponse):
            raise FuzzFailure(f"seed {seed}: BEGIN of a {kind} stream answered {begin}")
        ended = "OK"
        try:
            for offset, length in _frames(
                rng, len(stream), begin.resume_offset, splits, model.max_data
            ):
                ack = ask(DataRequest(offset, stream[offset : offset + length]), "DATA")
                report.frames += 1
                status = getattr(ack, "status", None)
                if not isinstance(ack, DataAck) or status not in STREAM_STATUSES:
                    raise FuzzFailure(
                        f"seed {seed}, stream {report.streams} ({kind}): DATA at {offset} "
                        f"answered {ack}"
                    )
                if status is not Status.OK:
                    ended = status.name
                    break
        except FuzzFailure:
            raise
        except Exception as exc:
            raise FuzzFailure(
                f"seed {seed}, stream {report.streams} ({kind}, split at {splits}): "
                f"{len(stream)} bytes starting {stream[:64].hex()} made the MCU raise {exc!r}"
            ) from exc
        report.statuses[ended] = report.statuses.get(ended, 0) + 1
        report.streams += 1
        if not isinstance(ask(HelloRequest(1, 1), "HELLO"), HelloResponse):
            raise FuzzFailure(f"seed {seed}: HELLO after a {kind} stream not answered")
        if ended == "OK":
            ask(AbortRequest(), "ABORT")  # next stream starts from 0
        factory = core.slot_infos()[0]
        if factory.version != "1.0.0" or factory.state is not SlotState.CONFIRMED:
            raise FuzzFailure(f"seed {seed}: a {kind} stream touched the running slot")
    return report

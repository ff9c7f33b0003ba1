"""Devices for the conformance suite's own tests: one broken per check, and odd but conforming ones.

Each defect is a small subclass of the Python virtual MCU (:class:`McuCore`) that
breaks exactly one rule of docs/protocol.md, the rule one check quotes. The
conforming variants take a liberty the spec allows (a MAY), which a check must
not hold against them. To cover a new check, add its defect to :data:`DEFECTS`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import lzma
from collections.abc import Callable
from typing import Any

from cobs import cobs

from protocols.mcugw.conformance import SuiteReport, run_suite
from protocols.mcugw.constants import (
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.crc import crc32
from protocols.mcugw.encoding import LZMA_FILTERS, Codec, thumb_filters
from protocols.mcugw.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    ConfirmRequest,
    DataAck,
    DataRequest,
    ErrorResponse,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Message,
    ResetRequest,
    Response,
    SetBaudRequest,
    StatusResponse,
    VerifyRequest,
)
from simulators.mcu.core import McuCore, RunState
from simulators.mcu.decoders import Piece
from simulators.mcu.flash import Flash
from simulators.mcu.link import McuDriver
from simulators.mcu.memory import MemoryTransport
from simulators.mcu.models import MODELS
from simulators.mcu.options import SUPPORTED_BAUDS, SimOptions
from simulators.mcu.trailer import RecordKind, SlotTrailer

MODEL = MODELS["vmcu-l0"]
SCRATCH_VERSION = "0.0.0-conformance"  # what the suite's --write transfer installs


class Device(McuCore):
    """The reference MCU with three places to go wrong: the segments it hears, the
    requests it serves and the answers it sends. Subclasses override one of them."""

    def __init__(self, model: object = MODEL, options: SimOptions | None = None) -> None:
        super().__init__(model, Flash(model), b"\x01\x02", options)  # type: ignore[arg-type]
        self.install_initial_app("1.0.0")
        self._rx = b""
        self.request: Message | None = None

    # -- segments: every complete 0x00-terminated segment, before the codec sees it
    def receive(self, now: float, data: bytes) -> None:
        self._rx += data
        *segments, self._rx = self._rx.split(b"\x00")
        out = b"".join(self.segment(now, s) for s in segments)
        if out:
            super().receive(now, out)

    def segment(self, now: float, seg: bytes) -> bytes:
        return seg + b"\x00"

    # -- requests
    def _handle(self, now: float, seq: int, msg: Message) -> None:
        self.request = msg
        if not self.serve(now, seq, msg):
            super()._handle(now, seq, msg)

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        """Answer ``msg`` differently and return True, or leave it to the reference MCU."""
        return False

    # -- answers
    def _reply(self, when: float, seq: int, msg: Response) -> None:
        out = self.answer(seq, msg)
        if out is not None:
            super()._reply(when, out[0], out[1])

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        return seq, msg

    # -- helpers for the defects
    def error(self, now: float, seq: int, opcode: Opcode, status: Status) -> bool:
        self._reply_error(now, seq, opcode, status)
        return True

    def in_rules(self, msg: DataRequest) -> bool:
        """A DATA frame no refusal rule of §9.3 catches (aligned, in range, not empty)."""
        s = self.session
        end = msg.offset + len(msg.data)
        return (
            s is not None
            and msg.offset % MODEL.write_size == 0
            and 0 < len(msg.data) <= MODEL.max_data
            and end <= s.size
        )

    def ack(self, now: float, seq: int, status: Status, offset: int) -> bool:
        self._reply(self._answer_time(now), seq, DataAck(status=status, next_offset=offset))
        return True


def _body(seg: bytes) -> bytes | None:
    try:
        return bytes(cobs.decode(seg))
    except cobs.DecodeError:
        return None


def _reframe(body: bytes) -> bytes:
    """The body with its CRC made right again: the device acts on what it should drop."""
    return bytes(cobs.encode(body[:-4] + crc32(body[:-4]).to_bytes(4, "little"))) + b"\x00"


def _frame_seq(body: bytes) -> int:
    return int.from_bytes(body[2:4], "little")


# ---------------------------------------------------------------- one defect per check


class WrongProtocolVersion(Device):
    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, HelloResponse):
            msg = dataclasses.replace(msg, protocol_version=2)
        return seq, msg


class RefusesOtherVersionRanges(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, HelloRequest) and (msg.min_version, msg.max_version) != (1, 1):
            return self.error(now, seq, Opcode.HELLO, Status.UNSUPPORTED)
        return False


class EmptySlotsWithAVersion(Device):
    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, InfoResponse):
            slots = tuple(
                dataclasses.replace(s, version="0.0.0") if s.state is SlotState.EMPTY else s
                for s in msg.slots
            )
            msg = dataclasses.replace(msg, slots=slots)
        return seq, msg


class AppServesVerify(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if self.state is RunState.APP and isinstance(msg, VerifyRequest):
            return self.error(now, seq, Opcode.VERIFY, Status.UNSUPPORTED)
        return False


class FirstStayResetRefused(Device):
    """Reboots into the bootloader as asked, but says REFUSED the first time."""

    said_refused = False

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        req = self.request
        stay = isinstance(req, ResetRequest) and req.mode is ResetMode.STAY
        if stay and isinstance(msg, StatusResponse) and not self.said_refused:
            self.said_refused = True
            return seq, ErrorResponse(Opcode.RESET, Status.REFUSED)
        return seq, msg


class CrcBlindExceptData(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body is not None and len(body) >= 10 and body[1] != Opcode.DATA:
            return _reframe(body)
        return seg + b"\x00"


class CrcBlindOnData(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body is not None and len(body) >= 10 and body[1] == Opcode.DATA:
            return _reframe(body)
        return seg + b"\x00"


class IgnoresFrameVersion(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body is not None and len(body) >= 10 and body[0] != 1:
            return _reframe(b"\x01" + body[1:])
        return seg + b"\x00"


class TrustsBodySize(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body is not None and len(body) >= 10:
            n = len(body) - 10
            if int.from_bytes(body[4:6], "little") != n:
                return _reframe(body[:4] + n.to_bytes(2, "little") + body[6:])
        return seg + b"\x00"


class AnswersShortSegments(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body and len(body) < 10:
            self._reply(self._answer_time(now), 0, ErrorResponse(Opcode.HELLO, Status.MALFORMED))
            return b"\x00"
        return seg + b"\x00"


class _Poisoned(Device):
    """Drops the segment after one that ``poisons`` (a receiver not reset at the delimiter)."""

    poisoned = False

    def poisons(self, seg: bytes) -> bool:
        raise NotImplementedError

    def segment(self, now: float, seg: bytes) -> bytes:
        if self.poisoned and seg:
            self.poisoned = False
            return b"\x00"
        if self.poisons(seg):
            self.poisoned = True
        return seg + b"\x00"


class NoiseSpoilsNextFrame(_Poisoned):
    def poisons(self, seg: bytes) -> bool:
        return 256 <= len(seg) < 1100 and _body(seg) is None  # line noise, not an oversize


class OversizeSpoilsNextFrame(_Poisoned):
    def poisons(self, seg: bytes) -> bool:
        return len(seg) > 8226


class RejectsShortCobsForm(Device):
    """A decoder that wants the 0x01 code after a final 0xFF block (§3.1's exception)."""

    def segment(self, now: float, seg: bytes) -> bytes:
        i, code = 0, 0
        while i < len(seg):
            code = seg[i]
            if code == 0:
                break
            i += code
        if seg and i == len(seg) and code == 0xFF:
            return b"\x00"
        return seg + b"\x00"


class FifteenBitSeq(Device):
    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        return seq & 0x7FFF, msg


class IgnoresRepeatedSeq(Device):
    last_seq: int | None = None

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        repeated, self.last_seq = seq == self.last_seq, seq
        return repeated  # "already answered": silence


class UnknownOpcodeAnsweredAsHello(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        if body is not None and len(body) >= 10 and body[1] not in set(Opcode):
            answer = ErrorResponse(Opcode.HELLO, Status.UNSUPPORTED)
            self._reply(self._answer_time(now), _frame_seq(body), answer)
            return b"\x00"
        return seg + b"\x00"


class ShortSetBaudIsBadBaud(Device):
    def segment(self, now: float, seg: bytes) -> bytes:
        body = _body(seg)
        short = body is not None and len(body) >= 10 and int.from_bytes(body[4:6], "little") < 4
        if body is not None and short and body[1] == Opcode.SET_BAUD:
            answer = ErrorResponse(Opcode.SET_BAUD, Status.BAD_BAUD)
            self._reply(self._answer_time(now), _frame_seq(body), answer)
            return b"\x00"
        return seg + b"\x00"


class DataBeforeFirstBeginOutOfRange(Device):
    begun = False

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, BeginRequest) and self.state is RunState.BOOTLOADER:
            self.begun = True
        bootloader = self.state is RunState.BOOTLOADER
        if isinstance(msg, DataRequest) and bootloader and self.session is None and not self.begun:
            return self.ack(now, seq, Status.OUT_OF_RANGE, 0)
        return False


class EmptyBeginIsBadState(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, BeginRequest) and msg.size == 0 and self.state is RunState.BOOTLOADER:
            return self.error(now, seq, Opcode.BEGIN, Status.BAD_STATE)
        return False


class ConfirmsInTheBootloader(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, ConfirmRequest) and self.state is RunState.BOOTLOADER:
            self._reply(self._answer_time(now), seq, StatusResponse(Opcode.CONFIRM, Status.OK))
            return True
        return False


class ActivateWithNothingIsBadState(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        staged = {t.status().state for t in self.trailers} & {SlotState.COMPLETE, SlotState.TRIAL}
        if isinstance(msg, ActivateRequest) and not staged and self.state is RunState.BOOTLOADER:
            return self.error(now, seq, Opcode.ACTIVATE, Status.BAD_STATE)
        return False


class UnknownRateUnsupported(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, SetBaudRequest) and msg.baud not in SUPPORTED_BAUDS:
            return self.error(now, seq, Opcode.SET_BAUD, Status.UNSUPPORTED)
        return False


class RefusesItsOwnRate(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, SetBaudRequest) and msg.baud == self.baud:
            return self.error(now, seq, Opcode.SET_BAUD, Status.BAD_BAUD)
        return False


class LosesAFrameAfterFallback(Device):
    """Falls back to the old rate, but its UART loses the first frame after that."""

    deaf_once = False
    switched_from: int | None = None

    def _on_baud(self, baud: int) -> None:
        if self.switched_from is not None and baud == self.switched_from:
            self.deaf_once, self.switched_from = True, None  # the fallback
        elif baud != self.baud:
            self.switched_from = self.baud
        super()._on_baud(baud)

    def segment(self, now: float, seg: bytes) -> bytes:
        if self.deaf_once and seg:
            self.deaf_once = False
            return b"\x00"
        return seg + b"\x00"


class SlowWhenHelloAndInfoAlternate(Device):
    """Answers late (1 s) once HELLO and INFO have alternated five times in a row."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[type] = []
        self.late = False

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        self.kinds = [*self.kinds[-4:], type(msg)]
        alternating = len(self.kinds) == 5 and all(
            a is not b and {a, b} == {HelloRequest, InfoRequest}
            for a, b in zip(self.kinds, self.kinds[1:], strict=False)
        )
        self.late = alternating
        return False

    def _reply(self, when: float, seq: int, msg: Response) -> None:
        if self.late and isinstance(msg, HelloResponse | InfoResponse):
            self.late, when = False, when + 1.0
        super()._reply(when, seq, msg)


class FreshBeginClaimsAnOffset(Device):
    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        req = self.request
        # (raw BEGINs: an encoded one's answer is encoded-stream's to check)
        big = isinstance(req, BeginRequest) and req.size > 2 * MODEL.sector_size and not req.flags
        if big and isinstance(msg, BeginResponse) and msg.resume_offset == 0:
            msg = dataclasses.replace(msg, resume_offset=MODEL.sector_size)
        return seq, msg


class MisalignedIsOutOfRange(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        s = self.session  # a raw transfer's rule: stream offsets have no grid (§17.2)
        if (
            isinstance(msg, DataRequest)
            and s
            and s.decoder is None
            and msg.offset % MODEL.write_size
        ):
            return self.ack(now, seq, Status.OUT_OF_RANGE, self._committed(now))
        return False


class DropsFramesAhead(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        s = self.session
        if (isinstance(msg, DataRequest) and self.in_rules(msg) and s and s.decoder is None
                and msg.offset > s.expected):  # fmt: skip
            return self.ack(now, seq, Status.BUSY, self._committed(now))
        return False


class IgnoresTheWindow(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        s = self.session
        if not (isinstance(msg, DataRequest) and self.in_rules(msg)) or s is None:
            return False
        beyond = msg.offset + len(msg.data) - self._committed(now) > MODEL.window
        if beyond and msg.offset > s.expected:
            s.held[msg.offset] = msg.data  # held although it is beyond the window
            return self.ack(now, seq, Status.GAP, s.expected)
        return False


class EarlyVerifyIsNoImage(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        s = self.session
        if isinstance(msg, VerifyRequest) and s is not None and s.expected < s.size:
            return self.error(now, seq, Opcode.VERIFY, Status.NO_IMAGE)
        return False


class _CheckpointLosingTrailer(SlotTrailer):
    def append(
        self, kind: RecordKind, arg: int = 0, sha256: bytes = b"", version: str = ""
    ) -> float:
        if kind is RecordKind.CHECKPOINT:
            return 0.0
        return super().append(kind, arg, sha256, version)


class LosesCheckpoints(Device):
    def __init__(self) -> None:
        super().__init__()
        self.trailers = [_CheckpointLosingTrailer(self.flash, i) for i in (0, 1)]


class VerifiesOnce(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, VerifyRequest) and self._staged_slot(SlotState.COMPLETE) is not None:
            return self.error(now, seq, Opcode.VERIFY, Status.BAD_STATE)
        return False


class ActivatesOnce(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        complete = self._staged_slot(SlotState.COMPLETE)
        trial = self._staged_slot(SlotState.TRIAL)
        if isinstance(msg, ActivateRequest) and complete is None and trial is not None:
            return self.error(now, seq, Opcode.ACTIVATE, Status.NO_IMAGE)
        return False


class RollsBackWithoutCountingBoots(Device):
    """The new app crashes; the rollback happens but INFO shows no boot attempt."""

    def __init__(self) -> None:
        super().__init__(options=SimOptions(crash_versions=frozenset({SCRATCH_VERSION})))

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, InfoResponse):
            slots = tuple(
                dataclasses.replace(s, boot_count=0) if s.state is SlotState.INVALID else s
                for s in msg.slots
            )
            msg = dataclasses.replace(msg, slots=slots)
        return seq, msg


class AbortOfNothingIsNoImage(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        staged = self._staged_slot(SlotState.WRITING, SlotState.COMPLETE)
        idle = staged is None and self.session is None and self.state is RunState.BOOTLOADER
        if isinstance(msg, AbortRequest) and idle:
            return self.error(now, seq, Opcode.ABORT, Status.NO_IMAGE)
        return False


class ProgramsOffGridFrames(Device):
    def serve(self, now: float, seq: int, msg: Message) -> bool:
        s = self.session
        if isinstance(msg, DataRequest) and s is not None and msg.offset == s.expected:
            end = msg.offset + len(msg.data)
            # A raw transfer's rule: stream offsets have no grid (§17.2).
            if len(msg.data) % MODEL.write_size and end != s.size and s.decoder is None:
                return self.ack(now, seq, Status.OK, end)  # as if it had programmed it
        return False


class TakesFlagsWithoutTail(Device):
    """Opens nothing, but answers OK to a BEGIN whose flags promise a tail it lacks."""

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        known = int(BeginFlags.COMPRESSED | BeginFlags.DELTA)  # reserved bits: still refused
        if isinstance(msg, BeginRequest) and msg.flags and not msg.encoding and not (
            int(msg.flags) & ~known
        ):
            self._reply(self._answer_time(now), seq, BeginResponse(Status.OK, 1, 0))
            return True
        return False


class ResumesInsideABlock(Device):
    """Answers an encoded resume one byte past its checkpoint (not a block end)."""

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        req = self.request
        if (isinstance(msg, BeginResponse) and msg.resume_offset and isinstance(req, BeginRequest)
                and req.flags and msg.resume_offset < req.stream_size):  # fmt: skip
            return seq, dataclasses.replace(msg, resume_offset=msg.resume_offset + 1)
        return seq, msg


class HoldsOffGridStreamFrames(Device):
    """Holds every out-of-order stream frame, on the write grid or not (and answers GAP
    again once the hole is filled, since an off-grid frame never drains by unit)."""

    def _holds(self, s: object, offset: int, n: int) -> bool:
        return True


class _RenamesStatus(Device):
    """Answers one §17.2 status as another (the slot is still dropped)."""

    was, now = Status.OK, Status.OK

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, DataAck) and msg.status is self.was:
            return seq, dataclasses.replace(msg, status=self.now)
        return seq, msg


class PatchRejectedAsDecodeError(_RenamesStatus):
    was, now = Status.PATCH_REJECTED, Status.DECODE_ERROR


class BombAsDecodeError(_RenamesStatus):
    was, now = Status.BLOCK_LENGTH, Status.DECODE_ERROR


class StoresThumbFiltered(Device):
    """Programs LZMA_THUMB blocks as LZMA decodes them: its BL pairs stay filtered (§17.1)."""

    def _write_piece(self, s: Any, piece: Piece) -> float:
        if piece.codec == Codec.LZMA_THUMB:
            raw = lzma.compress(piece.data, format=lzma.FORMAT_RAW,
                                filters=thumb_filters(piece.out_offset))  # fmt: skip
            data = lzma.decompress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
            piece = dataclasses.replace(piece, data=data)
        return super()._write_piece(s, piece)


#: check id -> a device that breaks exactly the rule that check quotes.
DEFECTS: dict[str, Callable[[], Device]] = {
    "hello-layout": WrongProtocolVersion,
    "hello-any-range": RefusesOtherVersionRanges,
    "info-layout": EmptySlotsWithAVersion,
    "app-mode-refusals": AppServesVerify,
    "reset-stay": FirstStayResetRefused,
    "crc-reject": CrcBlindExceptData,
    "version-reject": IgnoresFrameVersion,
    "length-reject": TrustsBodySize,
    "short-reject": AnswersShortSegments,
    "resync": NoiseSpoilsNextFrame,
    "oversize": OversizeSpoilsNextFrame,
    "cobs-forms": RejectsShortCobsForm,
    "seq-echo": FifteenBitSeq,
    "retry-same-seq": IgnoresRepeatedSeq,
    "unknown-opcode": UnknownOpcodeAnsweredAsHello,
    "short-payload": ShortSetBaudIsBadBaud,
    "data-no-session": DataBeforeFirstBeginOutOfRange,
    "begin-refusals": EmptyBeginIsBadState,
    "confirm-in-bootloader": ConfirmsInTheBootloader,
    "nothing-staged": ActivateWithNothingIsBadState,
    "set-baud-refusal": UnknownRateUnsupported,
    "set-baud-switch": RefusesItsOwnRate,
    "set-baud-fallback": LosesAFrameAfterFallback,
    "answer-time": SlowWhenHelloAndInfoAlternate,
    "begin-fresh": FreshBeginClaimsAnOffset,
    "data-refusals": MisalignedIsOutOfRange,
    "data-window": DropsFramesAhead,
    "data-busy": IgnoresTheWindow,
    "data-bad-crc": CrcBlindOnData,
    "verify-too-early": EarlyVerifyIsNoImage,
    "resume-checkpoint": LosesCheckpoints,
    "verify-ok": VerifiesOnce,
    "activate-trial": ActivatesOnce,
    "trial-boot": RollsBackWithoutCountingBoots,
    "verify-failed-abort": AbortOfNothingIsNoImage,
    "data-off-grid": ProgramsOffGridFrames,
    "encoded-begin": TakesFlagsWithoutTail,
    "encoded-stream": ResumesInsideABlock,
    "encoded-errors": PatchRejectedAsDecodeError,
    "encoded-bomb": BombAsDecodeError,
    "encoded-thumb": StoresThumbFiltered,
    "encoded-held-frames": HoldsOffGridStreamFrames,
}


# ---------------------------------------------------------------- conforming liberties


class AppReportsZeros(Device):
    """§7.1: in APP mode capabilities, max_data and window MAY be 0."""

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, HelloResponse) and msg.mode is Mode.APP:
            msg = dataclasses.replace(msg, capabilities=Capability(0), max_data=0, window=0)
        return seq, msg


class SmallBufferDropsLongFrames(Device):
    """§3.1: an MCU's buffer only holds its largest request; it MAY drop longer frames."""

    def __init__(self) -> None:
        super().__init__(model=dataclasses.replace(MODEL, max_data=128, window=512))

    def segment(self, now: float, seg: bytes) -> bytes:
        body = max(128 + 4, 121) + 10
        if len(seg) > body + body // 254 + 1:
            return b"\x00"
        return seg + b"\x00"


class AnyRateGoes(Device):
    """§9.5 names no rate an MCU must refuse: this one takes 12345 baud too."""

    def serve(self, now: float, seq: int, msg: Message) -> bool:
        if isinstance(msg, SetBaudRequest) and msg.baud == 12_345:
            super()._handle(now, seq, SetBaudRequest(230_400))  # switches, then falls back
            return True
        return False


class NoResume(Device):
    """Without the RESUME capability BEGIN MAY start over at 0 (§8.2)."""

    def answer(self, seq: int, msg: Response) -> tuple[int, Response] | None:
        if isinstance(msg, HelloResponse):
            msg = dataclasses.replace(msg, capabilities=msg.capabilities & ~Capability.RESUME)
        return seq, msg

    def _checkpoint_interval(self, size: int) -> int:
        return 1 << 40  # never reached: no checkpoint, so BEGIN always answers 0


CONFORMING: dict[str, Callable[[], Device]] = {
    "reference": Device,
    "app-reports-zeros": AppReportsZeros,
    "small-buffer": SmallBufferDropsLongFrames,
    "any-rate": AnyRateGoes,
    "no-resume": NoResume,
}


async def run_device(
    core: McuCore, *, write: bool = True, only: set[str] | None = None
) -> SuiteReport:
    """The suite against ``core`` over an in-memory link, as ``conformance --write`` would."""
    core.power_on(0.0)
    transport = MemoryTransport()
    driver = McuDriver(core, 0, transport.deliver)
    transport.driver = driver
    task = asyncio.create_task(driver.run())
    try:
        async with asyncio.timeout(90):
            return await run_suite(transport, port="mem", baud=0, write=write, only=only)
    finally:
        driver.stop()
        await transport.close()
        async with asyncio.timeout(5):
            await task

"""Sans-I/O virtual MCU: bootloader plus tiny app, the peer side of the shared codec.

Time is passed in; flash operations apply at once (so a kill is a faithful power
cut) while their modelled durations decide when answers and ACKs leave.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.mcugw.codec import BadFrame, Codec, PacketReceived
from protocols.mcugw.constants import (
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.encoding import Codec as BlockCodec
from protocols.mcugw.encoding import DecodeError, Encoding
from protocols.mcugw.packets import (
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
    SlotInfo,
    StatusResponse,
    VerifyResponse,
)
from simulators.mcu.boot import decide, fallback_slot
from simulators.mcu.decoders import BlockStreamDecoder, Piece
from simulators.mcu.flash import Flash, PowerCut
from simulators.mcu.models import McuModel
from simulators.mcu.options import SUPPORTED_BAUDS, SimOptions
from simulators.mcu.trailer import Record, RecordKind, SlotStatus, SlotTrailer

_CAPS = Capability.WINDOW | Capability.RESUME | Capability.SET_BAUD | Capability.APP_MODE
_DECODER_CAPS = Capability.COMPRESS | Capability.DELTA | Capability.THUMB


class RunState(enum.Enum):
    BOOTING = "booting"  # between reset and the boot decision; input is lost
    BOOTLOADER = "bootloader"
    APP = "app"


@dataclass
class _Session:
    slot: int
    size: int
    sha256: bytes
    version: str
    expected: int  # next in-order offset accepted for programming
    checkpoint: int
    interval: int
    held: dict[int, bytes] = field(default_factory=dict)
    erased: set[int] = field(default_factory=set)
    programming: deque[tuple[float, int]] = field(default_factory=deque)  # (done at, end)
    committed: int = 0
    # Encoded transfers (§17): offsets are stream offsets; blocks decode into the slot.
    decoder: BlockStreamDecoder | None = None
    out_checkpoint: int = 0  # image offset of the last checkpointed block end
    grid: int = 0  # stream offset the write grid counts from: BEGIN's resume offset


class McuCore:
    def __init__(
        self,
        model: McuModel,
        flash: Flash,
        uid: bytes,
        options: SimOptions | None = None,
        on_baud: Callable[[int], None] | None = None,
        baud: int = 115200,
    ) -> None:
        self.model = model
        self.flash = flash
        self.uid = uid
        self.opts = options or SimOptions()
        self.trailers = [SlotTrailer(flash, 0), SlotTrailer(flash, 1)]
        # Told the new UART rate after SET_BAUD; the link driver registers itself here.
        self.on_baud: Callable[[int], None] = on_baud or (lambda baud: None)
        self.baud = baud
        self._codec = Codec()
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._outputs: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self.state = RunState.BOOTING
        self.running_slot: int | None = None
        self.session: _Session | None = None
        self.phase = "boot"
        self._phase_ops = 0
        self._busy_until = 0.0
        self._baud_guard = 0  # bumps on every SET_BAUD so stale fallbacks are ignored
        self._baud_deaf = False
        self._hung = False  # the app hangs (hang-on-boot) until the watchdog resets the part
        self._baud_probation = False
        self.boots = 0
        self.crashes = 0
        flash.hook = self._flash_hook
        self._handlers = self._handler_table()  # built once: consulted for every frame

    # ------------------------------------------------------------ scheduling

    def _at(self, when: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._order), fn))

    def _reply(self, when: float, seq: int, msg: Response) -> None:
        """Queue an answer to leave at ``when`` (the link adds its wire time)."""
        heapq.heappush(self._outputs, (when, next(self._order), self._codec.encode(msg, seq)))

    def _answer_time(self, now: float, work_s: float = 0.0) -> float:
        done = max(now, self._busy_until) + work_s
        self._busy_until = done
        return done + self.model.turnaround_us / 1e6 + self.opts.extra_delay_s

    def next_deadline(self) -> float | None:
        times = [h[0][0] for h in (self._timers, self._outputs) if h]
        return min(times) if times else None

    def advance(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            when, _, fn = heapq.heappop(self._timers)
            fn(when)

    def take_output(self, now: float) -> list[tuple[float, bytes]]:
        """Frames due by ``now``, each with the time it became ready to transmit."""
        out = []
        while self._outputs and self._outputs[0][0] <= now:
            when, _, data = heapq.heappop(self._outputs)
            out.append((when, data))
        return out

    # ------------------------------------------------------------ power and boot

    def _flash_hook(self, op: int, kind: str, addr: int) -> None:
        self._phase_ops += 1
        if self.opts.cut_op is not None and op == self.opts.cut_op:
            raise PowerCut(f"power cut at flash op {op} ({kind} 0x{addr:x})")
        cut = self.opts.cut_phase
        if cut is not None and cut[0] == self.phase and self._phase_ops == cut[1]:
            raise PowerCut(f"power cut at op {cut[1]} of phase {self.phase}")

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self._phase_ops = 0

    def install_initial_app(self, version: str) -> None:
        """Factory-program slot 0 with a confirmed app if the flash is blank."""
        if any(t.status().state is not SlotState.EMPTY for t in self.trailers):
            return
        image = _synthetic_image(version)
        t = self.trailers[0]
        sector = self.model.sector_size
        for addr in range(0, len(image) + sector - 1, sector):
            self.flash.erase_sector(t.image_base + addr - addr % sector)
        self.flash.program(t.image_base, image)
        t.append(RecordKind.BEGIN, len(image), hashlib.sha256(image).digest(), version)
        t.append(RecordKind.COMPLETE)
        t.append(RecordKind.TRIAL, 1)
        t.append(RecordKind.CONFIRMED)

    def power_on(self, now: float, stay: bool = False) -> None:
        """Run the boot decision immediately (a cold start has no modelled delay)."""
        self._boot(now, stay)

    def _reset(self, now: float, stay: bool) -> None:
        self.state = RunState.BOOTING
        self._hung = False
        self.running_slot = None
        self.session = None
        self._timers.clear()
        self._busy_until = now
        self._codec = Codec()
        self._at(now + self.model.boot_ms / 1000, lambda t: self._boot(t, stay))

    def _boot(self, now: float, stay: bool) -> None:
        self.boots += 1
        self._enter("boot")
        if stay:
            self.state = RunState.BOOTLOADER
            return
        choice = decide(self.trailers)
        if choice.slot is None:
            self.state = RunState.BOOTLOADER
            return
        self.state = RunState.APP
        self.running_slot = choice.slot
        version = self.trailers[choice.slot].status().version
        if version in self.opts.crash_versions:
            self._at(now + self.opts.crash_delay_s, self._crash)
        elif version in self.opts.hang_versions:
            trial = choice.trial
            self._at(now + self.opts.crash_delay_s, lambda t: self._hang(t, trial))
        elif choice.trial:
            self._at(now + self.opts.confirm_delay_s, self._self_confirm)

    def _hang(self, now: float, trial: bool) -> None:
        """Stop answering. Only the watchdog the bootloader armed for a trial boot gets the
        part back; a confirmed image that hangs stays hung until a power cycle."""
        self._hung = True
        if trial:
            self._at(now + self.opts.watchdog_s, self._crash)

    def _crash(self, now: float) -> None:
        self.crashes += 1
        self._reset(now, stay=False)

    def _self_confirm(self, now: float) -> None:
        slot = self.running_slot
        if slot is None or self.trailers[slot].status().state is not SlotState.TRIAL:
            return
        self._enter("confirm")
        self.trailers[slot].append(RecordKind.CONFIRMED)

    # ------------------------------------------------------------ input

    def receive(self, now: float, data: bytes) -> None:
        if self.state is RunState.BOOTING or self._baud_deaf or self._hung:
            return  # nobody is listening, or listening at the wrong rate
        self._codec.receive_data(data)
        while (ev := self._codec.next_event()) is not None:
            if isinstance(ev, BadFrame):
                continue
            assert isinstance(ev, PacketReceived)
            self._baud_probation = False
            self._handle(now, ev.seq, ev.message)
            if self._is_booting():
                return  # a crash or reset wipes whatever else was received

    def _is_booting(self) -> bool:
        return self.state is RunState.BOOTING

    def _handle(self, now: float, seq: int, msg: Message) -> None:
        opcode = getattr(msg, "OPCODE", None)
        if opcode is None or hasattr(msg, "status"):
            return  # a response: MCUs only serve requests
        if opcode in self.opts.mute:
            return
        if opcode in self.opts.refuse:
            self._reply_error(now, seq, opcode, Status.REFUSED)
            return
        if self.state is RunState.APP and opcode not in (
            Opcode.HELLO,
            Opcode.INFO,
            Opcode.RESET,
            Opcode.CONFIRM,
        ):
            self._reply_error(now, seq, opcode, Status.NOT_IN_BOOTLOADER)
            return
        handler = self._handlers.get(opcode)
        if handler is None:
            self._reply_error(now, seq, opcode, Status.UNSUPPORTED)
            return
        handler(now, seq, msg)

    def _handler_table(self) -> dict[Opcode, Callable[[float, int, object], None]]:
        return {
            Opcode.HELLO: self._on_hello,
            Opcode.INFO: self._on_info,
            Opcode.BEGIN: self._on_begin,
            Opcode.DATA: self._on_data,
            Opcode.VERIFY: self._on_verify,
            Opcode.ACTIVATE: self._on_activate,
            Opcode.RESET: self._on_reset,
            Opcode.CONFIRM: self._on_confirm,
            Opcode.ABORT: self._on_abort,
            Opcode.SET_BAUD: self._on_set_baud,
        }

    def _reply_error(self, now: float, seq: int, opcode: Opcode, status: Status) -> None:
        if opcode is Opcode.DATA:
            msg: Response = DataAck(status=status, next_offset=self._committed(now))
        else:
            msg = ErrorResponse(opcode=opcode, status=status)
        self._reply(self._answer_time(now), seq, msg)

    def _mode(self) -> Mode:
        return Mode.APP if self.state is RunState.APP else Mode.BOOTLOADER

    # ------------------------------------------------------------ commands

    def _on_hello(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, HelloRequest)
        resp = HelloResponse(
            status=Status.OK,
            protocol_version=self.opts.protocol_version,
            mode=self._mode(),
            capabilities=_CAPS | (_DECODER_CAPS if self.opts.decoders else Capability(0)),
            max_data=self.model.max_data,
            window=self.model.window,
        )
        self._reply(self._answer_time(now), seq, resp)

    def slot_infos(self) -> tuple[SlotInfo, ...]:
        out = []
        for t in self.trailers:
            st = t.status()
            out.append(
                SlotInfo(
                    state=st.state,
                    boot_count=st.boots,
                    size=st.size,
                    sha256=st.sha256,
                    version=st.version,
                )
            )
        return tuple(out)

    def _on_info(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, InfoRequest)
        resp = InfoResponse(
            status=Status.OK,
            mode=self._mode(),
            running_slot=0xFF if self.running_slot is None else self.running_slot,
            uid=self.uid,
            model=self.model.name,
            compat=self.model.compat,
            bootloader_version=self.model.bootloader_version,
            geometry=self.model.geometry(),
            slots=self.slot_infos(),
        )
        self._reply(self._answer_time(now), seq, resp)

    def _on_begin(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, BeginRequest)
        self._enter("begin")
        statuses = [t.status() for t in self.trailers]
        if any(st.state is SlotState.TRIAL for st in statuses):
            self._reply_error(now, seq, Opcode.BEGIN, Status.BAD_STATE)
            return
        # int arithmetic: ~ on an IntFlag drops the bits it has no name for (2..31).
        known = int(BeginFlags.COMPRESSED | BeginFlags.DELTA)
        if int(msg.flags) != 0 and not (self.opts.decoders and int(msg.flags) & ~known == 0):
            self._reply_error(now, seq, Opcode.BEGIN, Status.UNSUPPORTED)
            return
        if msg.flags and (msg.encoding != Encoding.DEFLATE_BLOCKS or not msg.stream_size):
            self._reply_error(now, seq, Opcode.BEGIN, Status.MALFORMED)
            return
        if msg.size > self.model.slot_size:
            self._reply_error(now, seq, Opcode.BEGIN, Status.TOO_LARGE)
            return
        if msg.size == 0 or len(msg.version.encode()) > 80:
            self._reply_error(now, seq, Opcode.BEGIN, Status.MALFORMED)
            return
        # Never the slot that boots: while it is the only confirmed image it is
        # the MCU's one fallback (§10.4).
        hashed: list[int] = []
        fallback = fallback_slot(self.trailers, statuses, hashed)
        slot = 0 if fallback is None else 1 - fallback
        # Finding the fallback hashes confirmed images: that takes the MCU time (§11).
        hash_s = sum(math.ceil(n / 1024) for n in hashed) * self.model.hash_us_per_kib / 1e6
        if BeginFlags.DELTA in msg.flags and (
            fallback is None or statuses[fallback].sha256 != msg.base_sha256
        ):
            # Refused before anything is written: the patch would build garbage.
            refusal = ErrorResponse(Opcode.BEGIN, Status.DELTA_BASE_MISMATCH)
            self._reply(self._answer_time(now, hash_s), seq, refusal)
            return
        trailer = self.trailers[slot]
        st = statuses[slot]
        work = hash_s
        encoded = bool(msg.flags)
        # The version too: resuming under another version's BEGIN record would leave
        # the slot reporting that version after the install (§9.3, issue 23.1).
        same = st.size == msg.size and st.sha256 == msg.sha256 and st.version == msg.version
        # A checkpoint is a stream offset: resume only the very same stream, and a raw
        # transfer only a raw one (§17.3; the C core's bl_dec_same_stream).
        want = (msg.stream_size, msg.stream_sha256) if encoded else (0, b"")
        same = same and trailer.stream() == want
        if same and st.state in (SlotState.WRITING, SlotState.COMPLETE):
            # Resuming: torn records from earlier cuts are reclaimed here if needed.
            work += self._make_room(slot, st, self._tail_reserve() + 1)
            resume = self.trailers[slot].status().checkpoint
        else:
            work += trailer.erase()
            work += trailer.append(RecordKind.BEGIN, msg.size, msg.sha256, msg.version)
            if encoded:
                work += trailer.append(RecordKind.STREAM, msg.stream_size, msg.stream_sha256)
            resume = 0
        if encoded and st.state is SlotState.COMPLETE and same:
            resume = msg.stream_size  # a verified slot: straight to VERIFY
        self.session = _Session(
            slot=slot,
            size=msg.size,
            sha256=msg.sha256,
            version=msg.version,
            expected=resume,
            checkpoint=resume,
            interval=self._checkpoint_interval(msg.size),
            committed=resume,
            grid=resume,
        )
        if encoded:
            self.session.size = msg.stream_size  # DATA offsets and acks are in the stream
            self.session.decoder = self._decoder(slot, fallback, msg, resume)
        resp = BeginResponse(status=Status.OK, slot=slot, resume_offset=resume)
        self._reply(self._answer_time(now, work), seq, resp)

    def _decoder(
        self, slot: int, fallback: int | None, msg: BeginRequest, resume: int
    ) -> BlockStreamDecoder:
        out_base = self.trailers[slot].image_base
        base_slot = fallback if fallback is not None else 1 - slot
        base = self.trailers[base_slot]
        base_size = base.status().size if BeginFlags.DELTA in msg.flags else 0
        return BlockStreamDecoder(
            image_size=msg.size,
            stream_start=resume,
            delta=BeginFlags.DELTA in msg.flags,
            read_output=lambda off, n: self.flash.read(out_base + off, n),
            read_base=lambda off, n: self.flash.read(base.image_base + off, n),
            base_size=base_size,
            align=self.model.write_size,
            resume_grid=self.model.sector_size,
        )

    def _tail_reserve(self) -> int:
        """Records a verified transfer still needs: COMPLETE, TRIAL, every BOOT, the verdict."""
        return 3 + self.model.max_trial_boots

    def _checkpoint_interval(self, size: int) -> int:
        sector = self.model.sector_size
        # BEGIN, the tail, and two spare positions for torn appends.
        budget = max(1, self.trailers[0].capacity - 1 - self._tail_reserve() - 2)
        return max(sector, math.ceil(size / budget / sector) * sector)

    def _make_room(self, slot: int, st: SlotStatus, needed: int) -> float:
        """Rewrite a staged slot's trailer to its minimal form if fewer than ``needed`` are free.

        Only WRITING and COMPLETE slots get here, never a bootable one, so the
        erase this takes is safe to cut: the slot reads EMPTY or WRITING after.
        """
        if st.free >= needed:
            return 0.0
        records = [Record(RecordKind.BEGIN, st.size, st.sha256, st.version)]
        if st.stream_size:
            records.append(Record(RecordKind.STREAM, st.stream_size, st.stream_sha256))
        if st.state is SlotState.COMPLETE:
            records.append(Record(RecordKind.COMPLETE))
        elif st.checkpoint:
            records.append(Record(RecordKind.CHECKPOINT, st.checkpoint))
        return self.trailers[slot].rewrite(records)

    def _drop(self, slot: int) -> float:
        """Mark a staged slot INVALID, or erase its trailer when no position is left."""
        trailer = self.trailers[slot]
        if trailer.status().free > 0:
            return trailer.append(RecordKind.INVALID)
        return trailer.erase()

    def _committed(self, now: float) -> int:
        s = self.session
        if s is None:
            return 0
        while s.programming and s.programming[0][0] <= now:
            s.committed = s.programming.popleft()[1]
        return s.committed

    def _holds(self, s: _Session, offset: int, n: int) -> bool:
        """Whether an out-of-order frame can be held: held bytes are tracked per write
        unit (as the C core does), so a stream frame off the write grid cannot be."""
        if s.decoder is None:
            return True  # raw frames are on the grid (MISALIGNED otherwise)
        w = self.model.write_size
        return (offset - s.grid) % w == 0 and (n % w == 0 or offset + n == s.size)

    def _on_data(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, DataRequest)
        s = self.session
        if s is None:
            self._reply_error(now, seq, Opcode.DATA, Status.BAD_STATE)
            return
        end = msg.offset + len(msg.data)
        # An encoded stream is buffered by the decoder, not programmed: any offset will do.
        grid = self.model.write_size if s.decoder is None else 1
        if msg.offset % grid:
            self._reply_error(now, seq, Opcode.DATA, Status.MISALIGNED)
            return
        if end > s.size or len(msg.data) > self.model.max_data or not msg.data:
            self._reply_error(now, seq, Opcode.DATA, Status.OUT_OF_RANGE)
            return
        if len(msg.data) % grid and end != s.size:
            # Only the image's last frame may end off the write grid: anything else
            # would leave the next program starting mid-word.
            self._reply_error(now, seq, Opcode.DATA, Status.MISALIGNED)
            return
        committed = self._committed(now)
        if end <= s.expected:
            # Duplicate: idempotent by offset, never programmed twice.
            when = now + self.model.turnaround_us / 1e6
            self._reply(when, seq, DataAck(status=Status.OK, next_offset=committed))
            return
        if end - committed > self.model.window:
            self._reply_error(now, seq, Opcode.DATA, Status.BUSY)
            return
        if msg.offset > s.expected and not self._holds(s, msg.offset, len(msg.data)):
            # Dropped; the GAP names the hole (§9.3 "Held frames").
            when = now + self.model.turnaround_us / 1e6
            self._reply(when, seq, DataAck(status=Status.GAP, next_offset=s.expected))
            return
        if msg.offset > s.expected:
            held = s.held.get(msg.offset)
            if held is None or len(held) < len(msg.data):
                s.held[msg.offset] = msg.data
            when = now + self.model.turnaround_us / 1e6
            self._reply(when, seq, DataAck(status=Status.GAP, next_offset=s.expected))
            return
        # The sender may re-chunk a resend; program only the part not yet accepted.
        self._program(now, seq, msg.data[s.expected - msg.offset :])
        while True:
            below = [o for o in s.held if o <= s.expected]
            if not below:
                break
            for o in sorted(below):
                data = s.held.pop(o)
                if o + len(data) > s.expected:
                    self._program(now, seq, data[s.expected - o :])
        if s.held:
            # Still a hole below buffered frames: report it now rather than at RTO, but
            # after the OK answers above (§9.3: a GAP never overtakes them).
            self._reply(
                self._answer_time(now), seq, DataAck(status=Status.GAP, next_offset=s.expected)
            )

    def _program(self, now: float, seq: int, data: bytes) -> None:
        s = self.session
        assert s is not None
        if self.phase != "data":
            self._enter("data")  # counted across frames: cut-phase=data:K is the Kth op
        if s.decoder is not None:
            self._decode(now, seq, data)
            return
        offset = s.expected
        end = offset + len(data)
        opts = self.opts
        cut = opts.cut_at_bytes
        if opts.cut_at_fraction is not None:
            cut = int(s.size * opts.cut_at_fraction)
        if cut is not None and offset < cut <= end:
            raise PowerCut(f"power cut at image offset {cut}")
        base = self.trailers[s.slot].image_base
        sector = self.model.sector_size
        work = 0.0
        for sec in range(offset - offset % sector, end, sector):
            if sec not in s.erased:
                work += self.flash.erase_sector(base + sec)
                s.erased.add(sec)
        w = self.model.write_size
        padded = data + b"\xff" * (-len(data) % w)
        work += self.flash.program(base + offset, padded)
        boundary = end - end % s.interval
        if boundary > s.checkpoint and boundary < s.size:
            # A checkpoint only saves re-sending; it never eats into the records the
            # rest of the update needs (torn ones included).
            if self.trailers[s.slot].status().free > self._tail_reserve() + 1:
                work += self.trailers[s.slot].append(RecordKind.CHECKPOINT, boundary)
            s.checkpoint = boundary
        s.expected = end
        done_at = max(now, self._busy_until) + work
        self._busy_until = done_at
        s.programming.append((done_at, end))
        when = done_at + self.model.turnaround_us / 1e6 + opts.extra_delay_s
        self._reply(when, seq, DataAck(status=Status.OK, next_offset=end))

    def _decode(self, now: float, seq: int, data: bytes) -> None:
        """Feed stream bytes to the decoder; program each block it completes (§17)."""
        s = self.session
        assert s is not None and s.decoder is not None
        start, end = s.expected, s.expected + len(data)
        opts = self.opts
        cut = opts.cut_at_bytes
        if opts.cut_at_fraction is not None:
            cut = int(s.size * opts.cut_at_fraction)
        if cut is not None and start < cut <= end:
            raise PowerCut(f"power cut at stream offset {cut}")
        work = 0.0
        try:
            for piece in s.decoder.feed(data):
                work += self._write_piece(s, piece)
        except DecodeError as exc:
            # The slot being written is dropped; the running slot was only read.
            work += self._drop(s.slot)
            committed = s.committed
            self.session = None
            when = self._answer_time(now, work)
            self._reply(when, seq, DataAck(status=Status[exc.status], next_offset=committed))
            return
        s.expected = end
        done_at = max(now, self._busy_until) + work
        self._busy_until = done_at
        s.programming.append((done_at, end))
        when = done_at + self.model.turnaround_us / 1e6 + opts.extra_delay_s
        self._reply(when, seq, DataAck(status=Status.OK, next_offset=end))

    def _write_piece(self, s: _Session, piece: Piece) -> float:
        """Decode time, erase and program of one decoded piece; at a block end, maybe a
        checkpoint. Returns the time it took."""
        base = self.trailers[s.slot].image_base
        sector = self.model.sector_size
        out_offset, data, stream_end = piece.out_offset, piece.data, piece.stream_end
        rate = (
            self.model.lzma_us_per_kib
            if piece.codec in (BlockCodec.LZMA, BlockCodec.LZMA_THUMB)
            else (self.model.inflate_us_per_kib)
        )
        work = len(data) / 1024 * rate / 1e6
        b_end = out_offset + len(data)
        for sec in range(out_offset - out_offset % sector, b_end, sector):
            if sec not in s.erased:
                work += self.flash.erase_sector(base + sec)
                s.erased.add(sec)
        w = self.model.write_size
        work += self.flash.program(base + out_offset, data + b"\xff" * (-len(data) % w))
        # Checkpoint at a block end on a sector boundary, so a resume re-erases
        # nothing written below it.
        if stream_end is None:
            return work
        if b_end % sector == 0 and b_end - s.out_checkpoint >= s.interval and stream_end < s.size:
            if self.trailers[s.slot].status().free > self._tail_reserve() + 1:
                work += self.trailers[s.slot].append(RecordKind.CHECKPOINT, stream_end)
            s.out_checkpoint = b_end
            s.checkpoint = stream_end
        return work

    def _on_verify(self, now: float, seq: int, msg: object) -> None:
        self._enter("verify")
        s = self.session
        target = (
            s.slot if s is not None else self._staged_slot(SlotState.WRITING, SlotState.COMPLETE)
        )
        if target is None:
            self._reply_error(now, seq, Opcode.VERIFY, Status.NO_IMAGE)
            return
        trailer = self.trailers[target]
        st = trailer.status()
        if s is not None and s.expected < s.size and st.state is not SlotState.COMPLETE:
            self._reply_error(now, seq, Opcode.VERIFY, Status.BAD_STATE)
            return
        digest = hashlib.sha256(self.flash.read(trailer.image_base, st.size)).digest()
        work = math.ceil(st.size / 1024) * self.model.hash_us_per_kib / 1e6
        if digest != st.sha256:
            work += self._drop(target)
            self.session = None
            self._reply(
                self._answer_time(now, work),
                seq,
                ErrorResponse(Opcode.VERIFY, Status.VERIFY_FAILED),
            )
            return
        if st.state is SlotState.WRITING:
            work += self._make_room(target, st, self._tail_reserve())
            work += trailer.append(RecordKind.COMPLETE)
        self._reply(self._answer_time(now, work), seq, VerifyResponse(Status.OK, digest))

    def _staged_slot(self, *states: SlotState) -> int | None:
        for i, t in enumerate(self.trailers):
            if t.status().state in states:
                return i
        return None

    def _on_activate(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, ActivateRequest)
        self._enter("activate")
        slot = self._staged_slot(SlotState.COMPLETE)
        if slot is None:
            if self._staged_slot(SlotState.TRIAL) is not None:
                # Already activated: a retry after a lost answer. Idempotent.
                self._reply(self._answer_time(now), seq, StatusResponse(Opcode.ACTIVATE, Status.OK))
                return
            self._reply_error(now, seq, Opcode.ACTIVATE, Status.NO_IMAGE)
            return
        generation = 1 + max(t.status().generation for t in self.trailers)
        # TRIAL goes in only with room behind it for every BOOT and the verdict.
        work = self._make_room(slot, self.trailers[slot].status(), self._tail_reserve() - 1)
        work += self.trailers[slot].append(RecordKind.TRIAL, generation)
        self.session = None
        self._reply(self._answer_time(now, work), seq, StatusResponse(Opcode.ACTIVATE, Status.OK))

    def _on_reset(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, ResetRequest)
        when = self._answer_time(now)
        self._reply(when, seq, StatusResponse(Opcode.RESET, Status.OK))
        stay = msg.mode is ResetMode.STAY
        self._at(when, lambda t: self._reset(t, stay))

    def _on_confirm(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, ConfirmRequest)
        slot = self.running_slot
        state = None if slot is None else self.trailers[slot].status().state
        if slot is None or state not in (SlotState.TRIAL, SlotState.CONFIRMED):
            self._reply_error(now, seq, Opcode.CONFIRM, Status.NO_IMAGE)
            return
        work = 0.0
        if state is SlotState.TRIAL:
            self._enter("confirm")
            work = self.trailers[slot].append(RecordKind.CONFIRMED)
        self._reply(self._answer_time(now, work), seq, StatusResponse(Opcode.CONFIRM, Status.OK))

    def _on_abort(self, now: float, seq: int, msg: object) -> None:
        self._enter("abort")
        slot = self._staged_slot(SlotState.WRITING, SlotState.COMPLETE)
        work = 0.0
        if slot is not None:
            work = self._drop(slot)
        self.session = None
        self._reply(self._answer_time(now, work), seq, StatusResponse(Opcode.ABORT, Status.OK))

    def _on_set_baud(self, now: float, seq: int, msg: object) -> None:
        assert isinstance(msg, SetBaudRequest)
        if msg.baud not in SUPPORTED_BAUDS:
            self._reply_error(now, seq, Opcode.SET_BAUD, Status.BAD_BAUD)
            return
        when = self._answer_time(now)
        self._reply(when, seq, StatusResponse(Opcode.SET_BAUD, Status.OK))
        self._baud_guard += 1
        guard = self._baud_guard
        old = self.baud

        def switch(t: float) -> None:
            self._on_baud(msg.baud)
            self._baud_deaf = self.opts.baud_fail
            self._baud_probation = True
            self._at(t + self.opts.baud_fallback_s, fallback)

        def fallback(t: float) -> None:
            if guard == self._baud_guard and self._baud_probation:
                self._baud_deaf = False
                self._baud_probation = False
                self._on_baud(old)

        self._at(when, switch)

    def _on_baud(self, baud: int) -> None:
        self.baud = baud
        self.on_baud(baud)


def _synthetic_image(version: str) -> bytes:
    """A deterministic stand-in for a factory app image."""
    seed = hashlib.sha256(f"factory-app {version}".encode()).digest()
    return (seed * 512)[: 16 * 1024]

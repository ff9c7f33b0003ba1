"""Async driver: runs the sans-I/O client over a :class:`Transport`.

This is the only protocol module that awaits I/O or reads the event-loop clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from protocols.errors import DeviceTimeout, LocalProtocolError, RemoteProtocolError
from protocols.mcugw.client import Acked, ClientEvent, ClientProtocol, Garbled, Reply, TimedOut
from protocols.mcugw.constants import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    BeginFlags,
    Capability,
    Mode,
    Opcode,
    ResetMode,
    SlotState,
    Status,
)
from protocols.mcugw.encoding import Encoded, Encoding, choose
from protocols.mcugw.errors import DeviceRejected, UnsupportedVersionError, VerifyFailed
from protocols.mcugw.framing import wire_size
from protocols.mcugw.packets import (
    AbortRequest,
    ActivateRequest,
    BeginRequest,
    BeginResponse,
    ConfirmRequest,
    ErrorResponse,
    Geometry,
    HelloRequest,
    HelloResponse,
    InfoRequest,
    InfoResponse,
    Request,
    ResetRequest,
    Response,
    SetBaudRequest,
    VerifyRequest,
    VerifyResponse,
    encode_payload,
)
from protocols.mcugw.plan import FlashStep, plan_flash
from protocols.mcugw.timing import (
    LinkTiming,
    ack_batch_delay,
    begin_time,
    data_rto,
    nak_holdoff,
    verify_time,
)
from protocols.mcugw.transfer import TransferWindow
from protocols.transport import Transport

#: Largest DATA chunk we offer; the MCU's max_data usually decides.
CLIENT_MAX_CHUNK = 4096
#: INFO answer payload assumed for timeouts and retry budgets (two slots with
#: versions, the geometry and identity strings fit).
INFO_ANSWER = 400
#: How long an app may take after a trial boot before it must have confirmed.
DEFAULT_CONFIRM_TIMEOUT_S = 10.0
#: Immediate resends allowed per command when its answer arrives damaged. At a
#: byte error rate of 5e-3 a 174-byte INFO answer survives about one try in
#: three; 32 resends cost a few round trips, not timeouts (docs/protocol.md §6).
GARBLED_RESENDS = 32
#: Extra tries on silence for those commands once the link has shown damaged
#: frames: there a silent try is most likely a request lost to the same noise
#: (a 60-byte BEGIN is hit about one time in four at 5e-3, and a command that
#: needs several sends to get its long answer through loses some of them).
#: Once the link has answered and lost exchanges, the budgets come from its
#: observed loss instead (``LinkLoss``, docs/protocol.md §6), within these caps:
NOISY_EXTRA_ATTEMPTS = 3
#: Most tries on silence a command gets, however noisy the link: each costs a
#: whole per-try timeout, so this bounds how long a dead MCU takes to notice.
MAX_SILENT_ATTEMPTS = 40
#: Most immediate resends on damaged answers (each costs only a round trip).
MAX_GARBLED_RESENDS = 400
#: Commands an MCU may receive twice with no effect beyond answering twice.
_IDEMPOTENT = frozenset(
    {
        Opcode.HELLO,
        Opcode.INFO,
        Opcode.BEGIN,
        Opcode.VERIFY,
        Opcode.ACTIVATE,
        Opcode.CONFIRM,
        Opcode.ABORT,
    }
)

ProgressFn = Callable[[str, int, int], None]
#: Write progress is reported at most this often (plus the start and the end):
#: per acknowledgement it would be ~90 calls a second at 921600 baud, each
#: fanning out to the CLI's bar or the gateway's journal and twin reports.
PROGRESS_EVERY_S = 0.1


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


@dataclass
class LinkStats:
    tx: int = 0
    rx: int = 0
    garbled: int = 0


@dataclass(frozen=True, slots=True)
class FlashResult:
    ok: bool
    outcome: str  # "confirmed", "rolled_back" or "unconfirmed"
    version: str
    bytes: int
    seconds: float
    transfer_seconds: float
    wire_bytes_tx: int
    wire_bytes_rx: int
    retransmits: int
    resumed_from: int
    slot: int
    sha256: str
    running_version: str
    chunk: int
    window: int
    encoding: str = "raw"  # "raw", "compressed" or "delta" (§17)
    stream_bytes: int = 0  # DATA payload bytes the transfer needed (image size when raw)


class BootloaderSession:
    def __init__(self, transport: Transport, baud: int) -> None:
        self._transport = transport
        self._client = ClientProtocol()
        self.link = LinkTiming(baud=baud)
        self.stats = LinkStats()
        self.hello_info: HelloResponse | None = None
        self.device: InfoResponse | None = None
        # The slot the app ran from before connect() reset into the bootloader.
        self.booted_slot: int | None = None
        self._flushed = False

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _flush(self) -> None:
        data = self._client.data_to_send()
        if data:
            self.stats.tx += len(data)
            await self._transport.write(data)

    async def _next_event(self, extra_deadline: float | None = None) -> ClientEvent | None:
        """Next client event; None once ``extra_deadline`` passes with nothing to report."""
        while True:
            ev = self._client.next_event()
            if ev is not None:
                return ev
            now = self._now()
            self._client.poll(now)
            ev = self._client.next_event()
            if ev is not None:
                return ev
            await self._flush()
            if extra_deadline is not None and now >= extra_deadline:
                return None
            deadlines = [d for d in (self._client.next_deadline(), extra_deadline) if d is not None]
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            try:
                async with asyncio.timeout(wait):
                    data = await self._transport.read()
            except TimeoutError:
                continue
            self.stats.rx += len(data)
            self._client.receive_data(data)

    async def request(
        self, req: Request, per_try: float, attempts: int = 3, answer: int = 16
    ) -> Response:
        """Send one command and return its OK answer; raise on refusal or silence.

        ``answer`` is the expected answer's payload length: with the request's,
        it sizes the retry budget on a link that has shown loss.
        """
        if not self._flushed:
            self._client.flush_line()
            self._flushed = True
        resends = extra = 0
        if req.OPCODE in _IDEMPOTENT:
            resends = GARBLED_RESENDS
            # Single-try probes (HELLO after a reset, INFO polls) loop on their own.
            extra = NOISY_EXTRA_ATTEMPTS if attempts >= 3 else 0
            if self.stats.garbled:
                attempts, extra = attempts + extra, 0
            resends, silent = self._budget(req, answer)
            if attempts >= 3:
                attempts = max(attempts, silent)
        idempotent = req.OPCODE in _IDEMPOTENT
        self._client.send_request(
            req, self._now(), per_try, attempts, resends, extra, answer_size=answer,
            resend_cap=MAX_GARBLED_RESENDS if idempotent else 0,
            silent_cap=MAX_SILENT_ATTEMPTS if idempotent and attempts >= 3 else 0,
        )  # fmt: skip
        while True:
            ev = await self._next_event()
            if isinstance(ev, Reply):
                if isinstance(ev.response, ErrorResponse):
                    raise DeviceRejected(req.OPCODE.name, ev.response.status)
                return ev.response
            if isinstance(ev, TimedOut):
                raise DeviceTimeout(
                    f"no answer to {req.OPCODE.name} from {self._transport.name} "
                    f"after {ev.attempts} attempts of {per_try:.2f} s{self._garbled_note()}"
                )
            if isinstance(ev, Garbled):
                self.stats.garbled += 1

    def _budget(self, req: Request, answer: int) -> tuple[int, int]:
        """(resends on damage, tries on silence) this link's observed loss calls for.

        Damage costs the whole exchange (request and answer); silence is the
        request lost on its way, and only matters if it keeps coming before an
        answer gets through. Each is sized so that running out has a chance
        below ``FAIL_TARGET``; the client grows them during the request if its
        own damaged answers show the link worse than that (§6).
        """
        loss = self._client.loss
        request = wire_size(len(encode_payload(req)[1]))
        exchange = request + wire_size(answer)
        resends = min(MAX_GARBLED_RESENDS, loss.tries_for(exchange))
        silent = min(MAX_SILENT_ATTEMPTS, loss.silent_tries_for(request, exchange))
        return max(GARBLED_RESENDS, resends), silent

    def _garbled_note(self) -> str:
        n = self.stats.garbled
        return f" ({n} garbled frames received: is this a bootloader?)" if n else ""

    def _geometry(self) -> Geometry:
        if self.device is None:
            raise LocalProtocolError("INFO has not been read yet")
        return self.device.geometry

    # ------------------------------------------------------------ commands

    async def hello(self, per_try: float | None = None, attempts: int = 3) -> HelloResponse:
        t = per_try or self.link.command_timeout(2, 16)
        resp = await self.request(
            HelloRequest(min_version=MIN_PROTOCOL_VERSION, max_version=PROTOCOL_VERSION),
            t,
            attempts,
            answer=16,
        )
        assert isinstance(resp, HelloResponse)
        if not MIN_PROTOCOL_VERSION <= resp.protocol_version <= PROTOCOL_VERSION:
            raise UnsupportedVersionError(
                resp.protocol_version, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
            )
        self.hello_info = resp
        return resp

    async def info(self, attempts: int = 3) -> InfoResponse:
        resp = await self.request(
            InfoRequest(), self.link.command_timeout(0, INFO_ANSWER), attempts, INFO_ANSWER
        )
        assert isinstance(resp, InfoResponse)
        self.device = resp
        return resp

    async def connect(self) -> InfoResponse:
        """HELLO + INFO, entering the bootloader if the app is running."""
        hello = await self.hello()
        info = await self.info()
        if hello.mode is Mode.APP:
            info = await self._let_trial_finish(info)
            running = info.running_slot
            self.booted_slot = running if running < len(info.slots) else None
            await self.reset(ResetMode.STAY)
            hello = await self._await_boot(want=Mode.BOOTLOADER)
            info = await self.info()
        return info

    async def _let_trial_finish(self, info: InfoResponse) -> InfoResponse:
        """Wait (bounded) for a running trial image to confirm before resetting the MCU.

        A reset during the trial run would cost one of its ``max_trial_boots``
        attempts; after a power cut that may be the attempt that rolls it back.
        """
        geo = info.geometry
        deadline = self._now() + DEFAULT_CONFIRM_TIMEOUT_S
        per_try = self.link.command_timeout(0, INFO_ANSWER, geo.boot_ms / 1000)
        interval = max(0.02, geo.boot_ms / 2000)
        while (
            info.mode is Mode.APP
            and info.running_slot < len(info.slots)
            and info.slots[info.running_slot].state is SlotState.TRIAL
            and self._now() < deadline
        ):
            await self._next_event(extra_deadline=self._now() + interval)
            with contextlib.suppress(DeviceTimeout):
                resp = await self.request(InfoRequest(), per_try, 1, INFO_ANSWER)
                assert isinstance(resp, InfoResponse)
                info = resp
        self.device = info
        return info

    async def reset(self, mode: ResetMode) -> None:
        # The answer may be lost while rebooting; HELLO probing decides.
        with contextlib.suppress(DeviceTimeout):
            await self.request(
                ResetRequest(mode=mode), self.link.command_timeout(1, 1), attempts=1, answer=1
            )

    async def await_boot(self) -> HelloResponse:
        """HELLO until the MCU answers after a reset (in whichever mode it came up)."""
        return await self._await_boot()

    async def _await_boot(self, want: Mode | None = None) -> HelloResponse:
        geo = self._geometry()
        boot_s = geo.boot_ms / 1000
        deadline = self._now() + (boot_s + 0.5) * 4
        per_try = boot_s + self.link.command_timeout(2, 16)
        late = 0  # probes (or RESET rounds) past the deadline, allowed on a lossy link
        await self._listen_for(boot_s)
        while True:
            try:
                hello = await self.hello(per_try=per_try, attempts=1)
            except DeviceTimeout:
                if self._now() > deadline:
                    late += 1
                    if late > self._silent_polls(HelloRequest(0, 0), 16):
                        raise
                continue
            if want is None or hello.mode is want:
                return hello
            if self._now() > deadline:
                late += 1
                if late > self._silent_polls(ResetRequest(ResetMode.STAY), 1):
                    raise DeviceTimeout(f"MCU did not come up in {want.name} mode after reset")
            # Still in the other mode well after boot_ms: the RESET itself, not just
            # its answer, was lost (a noisy link), so send it again (§6).
            await self.reset(ResetMode.STAY if want is Mode.BOOTLOADER else ResetMode.RUN)
            await self._listen_for(boot_s)

    async def _listen_for(self, seconds: float) -> None:
        """Let the MCU's advertised boot time pass before probing it.

        A booting MCU drops what it hears, so a probe sent at once only costs a
        whole per-try timeout (about 0.3 s) before the next one.
        """
        until = self._now() + seconds
        while (ev := await self._next_event(extra_deadline=until)) is not None:
            if isinstance(ev, Garbled):
                self.stats.garbled += 1

    async def set_baud(self, baud: int) -> bool:
        """Switch the link rate; returns False (and stays put) if the new rate fails."""
        caps = self.hello_info.capabilities if self.hello_info else Capability(0)
        if Capability.SET_BAUD not in caps:
            return False
        old = self.link
        try:
            await self.request(SetBaudRequest(baud=baud), old.command_timeout(4, 1), answer=1)
        except DeviceRejected as exc:
            if exc.status is Status.BAD_BAUD:
                return False
            raise
        self._transport.set_baud(baud)
        self.link = LinkTiming(baud=baud, turnaround_s=old.turnaround_s)
        try:
            await self.hello()
            return True
        except DeviceTimeout:
            # The MCU falls back on its own when it hears nothing valid at the new rate.
            self._transport.set_baud(old.baud)
            self.link = old
            await self.hello(per_try=1.5, attempts=3)
            return False

    async def abort(self) -> None:
        await self.request(AbortRequest(), self.link.command_timeout(0, 1, 0.1), answer=1)

    async def confirm(self) -> None:
        await self.request(ConfirmRequest(), self.link.command_timeout(0, 1, 0.1), answer=1)

    # ------------------------------------------------------------ transfer

    async def transfer(
        self, image: bytes, start: int, progress: ProgressFn = _no_progress
    ) -> TransferWindow:
        hello = self.hello_info
        geo = self._geometry()
        if hello is None:
            raise LocalProtocolError("HELLO has not been exchanged")
        chunk = min(hello.max_data, CLIENT_MAX_CHUNK)
        chunk -= chunk % max(1, geo.write_size)
        window = hello.window if Capability.WINDOW in hello.capabilities else chunk
        window = max(window, chunk)
        win = TransferWindow(
            image,
            start=start,
            chunk=chunk,
            window=window,
            rto=data_rto(self.link, geo, window, chunk),
            nak_holdoff=nak_holdoff(self.link, chunk),
            align=geo.write_size,
            loss=self._client.loss,
        )
        progress("applying", start, len(image))
        reported = win.acked
        next_report = self._now() + PROGRESS_EVERY_S
        client = self._client
        while not win.done:
            for req in win.frames_to_send(self._now()):
                win.note_sent(req.offset, client.send_data(req))
            await self._flush()
            deadline = win.next_deadline()
            delay = ack_batch_delay(self.link, win.in_flight, win.window, win.chunk)
            if deadline is not None:
                delay = min(delay, deadline - self._now())
            if delay > 0:
                await asyncio.sleep(delay)  # acknowledgements pile up in the transport
            ev = await self._next_event(extra_deadline=deadline)
            if ev is None:
                win.on_timeout(self._now())
                continue
            now = self._now()
            # Take every event already received before sending again, so one
            # wake-up answers a burst of acknowledgements with one write.
            while ev is not None:
                if isinstance(ev, Acked):
                    win.on_ack(ev.ack, now, ev.seq)
                elif isinstance(ev, Garbled):
                    self.stats.garbled += 1
                ev = client.next_event()
            if win.acked != reported and (win.done or now >= next_report):
                reported = win.acked
                next_report = now + PROGRESS_EVERY_S
                progress("applying", win.acked, len(image))
        # Thousands of DATA exchanges: the best sample of the link's loss for the
        # commands that follow (VERIFY, ACTIVATE, the outcome polls).
        client.loss.record(win.frames_sent, win.frames_acked, win.exchange_bytes)
        return win

    async def flash(
        self,
        image: bytes,
        version: str,
        *,
        progress: ProgressFn = _no_progress,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT_S,
        base: bytes | None = None,
        encode: bool = True,
        prepared: Encoded | None = None,
    ) -> FlashResult:
        """Write ``image`` (raw, compressed or as a delta against ``base``, §17).

        ``prepared`` is a published delta: then ``image`` is empty and the
        stream is sent as it is, or refused (DELTA_BASE_MISMATCH) by the MCU.
        """
        started = time.monotonic()
        size = len(image) if prepared is None else prepared.image_size
        info = self.device
        if info is None or info.mode is not Mode.BOOTLOADER:
            info = await self.connect()
        geo = info.geometry
        if size > geo.slot_size:
            raise LocalProtocolError(
                f"image is {size} bytes but the {info.model} slot holds {geo.slot_size}"
            )
        if not size:
            raise LocalProtocolError("image is empty")
        digest = hashlib.sha256(image).digest() if prepared is None else prepared.image_sha256
        plan = plan_flash(info, size, digest, self.booted_slot, version)
        if plan.step is not FlashStep.WRITE and plan.slot is not None:
            # Already activated or installed (say, a cut hit the trial boot or the
            # confirm): finish that, never write the image over the fallback slot.
            return await self._finish(
                plan.slot, size, version, digest, started, progress, confirm_timeout
            )
        caps = self.hello_info.capabilities if self.hello_info else Capability(0)
        base_in_slot = base is not None and _holds(info, hashlib.sha256(base).digest())
        enc = prepared or choose(caps, image, base, base_in_slot, allow=encode)
        begin_req = _begin_request(size, digest, version, enc)
        confirmed = [s.size for s in info.slots if s.state is SlotState.CONFIRMED]
        begin_timeout = self.link.command_timeout(
            110 + len(version), 6, begin_time(geo, confirmed)
        )
        try:
            begin = await self.request(begin_req, begin_timeout, answer=6)
        except DeviceRejected as exc:
            if exc.status is not Status.DELTA_BASE_MISMATCH or enc is None or prepared:
                raise
            # The fallback slot is not the base after all: send it compressed.
            enc = choose(caps, image, None, False, allow=encode)
            begin_req = _begin_request(size, digest, version, enc)
            begin = await self.request(begin_req, begin_timeout, answer=6)
        assert isinstance(begin, BeginResponse)
        payload = image if enc is None else enc.stream
        if begin.resume_offset > len(payload):
            raise RemoteProtocolError(f"MCU resume offset {begin.resume_offset} beyond image")
        if enc is not None and begin.resume_offset not in (0, *enc.block_ends):
            raise RemoteProtocolError(f"MCU resume offset {begin.resume_offset} not a block end")
        t0 = time.monotonic()
        win = await self.transfer(payload, begin.resume_offset, _scaled(progress, size))
        transfer_s = time.monotonic() - t0
        progress("verifying", size, size)
        ver = await self.request(
            VerifyRequest(), self.link.command_timeout(0, 33, verify_time(geo, size)), answer=33
        )
        assert isinstance(ver, VerifyResponse)
        if ver.sha256 != digest:
            raise VerifyFailed(f"slot {begin.slot} hash {ver.sha256.hex()} != image {digest.hex()}")
        await self.request(ActivateRequest(), self.link.command_timeout(0, 1, 0.2), answer=1)
        progress("rebooting", size, size)
        await self.reset(ResetMode.RUN)
        outcome, running = await self._await_outcome(begin.slot, confirm_timeout)
        return FlashResult(
            ok=outcome == "confirmed",
            outcome=outcome,
            version=version,
            bytes=size,
            seconds=time.monotonic() - started,
            transfer_seconds=transfer_s,
            wire_bytes_tx=self.stats.tx,
            wire_bytes_rx=self.stats.rx,
            retransmits=win.retransmits + self._client.retries,
            # In image bytes, as the twin reports it, also for a stream resumed at a block.
            resumed_from=begin.resume_offset
            if enc is None
            else enc.image_offset(begin.resume_offset),
            slot=begin.slot,
            sha256=digest.hex(),
            running_version=running,
            chunk=win.max_chunk,
            window=win.window,
            encoding="raw" if enc is None else ("delta" if enc.flags_delta else "compressed"),
            stream_bytes=len(payload),
        )

    async def _finish(
        self,
        slot: int,
        size: int,
        version: str,
        digest: bytes,
        started: float,
        progress: ProgressFn,
        confirm_timeout: float,
    ) -> FlashResult:
        progress("rebooting", size, size)
        await self.reset(ResetMode.RUN)
        outcome, running = await self._await_outcome(slot, confirm_timeout)
        return FlashResult(
            ok=outcome == "confirmed",
            outcome=outcome,
            version=version,
            bytes=size,
            seconds=time.monotonic() - started,
            transfer_seconds=0.0,
            wire_bytes_tx=self.stats.tx,
            wire_bytes_rx=self.stats.rx,
            retransmits=self._client.retries,
            resumed_from=size,
            slot=slot,
            sha256=digest.hex(),
            running_version=running,
            chunk=0,
            window=0,
        )

    async def _await_outcome(self, slot: int, confirm_timeout: float) -> tuple[str, str]:
        """Poll INFO after the trial reset until the app confirms or the MCU rolls back.

        The outcome is what the MCU last said. If the deadline passes before it
        said anything (every poll lost on a noisy link), polling goes on for as
        many more polls as that link's loss calls for: a flash whose image is
        running is never called failed for want of an answer.
        """
        geo = self._geometry()
        deadline = self._now() + (geo.boot_ms / 1000 + 0.2) * (geo.max_trial_boots + 1)
        deadline += confirm_timeout
        interval = max(0.02, geo.boot_ms / 2000)
        per_try = self.link.command_timeout(0, INFO_ANSWER, geo.boot_ms / 1000)
        running = ""
        heard = False
        extra_polls = 0
        await self._listen_for(geo.boot_ms / 1000)
        while True:
            try:
                info = await self.request(InfoRequest(), per_try, 1, INFO_ANSWER)
            except DeviceTimeout:
                info = None  # rebooting, or the poll was lost
            if isinstance(info, InfoResponse):
                heard = True
                self.device = info
                state = info.slots[slot].state
                if 0 <= info.running_slot < len(info.slots):
                    running = info.slots[info.running_slot].version
                if state is SlotState.INVALID:
                    return "rolled_back", running
                if info.mode is Mode.BOOTLOADER:
                    # The RESET (or its answer) was lost on the link: ask again.
                    await self.reset(ResetMode.RUN)
                    continue
                if state is SlotState.CONFIRMED and info.running_slot == slot:
                    return "confirmed", running
            if self._now() > deadline:
                if heard:
                    return "unconfirmed", running
                extra_polls += 1
                if extra_polls > self._silent_polls(InfoRequest(), INFO_ANSWER):
                    raise DeviceTimeout(
                        f"no answer to INFO from {self._transport.name} after the trial "
                        f"reset{self._garbled_note()}"
                    )
            # Paced by the MCU's advertised boot time, not a guess.
            await self._next_event(extra_deadline=self._now() + interval)

    def _silent_polls(self, req: Request, answer: int) -> int:
        """Probes (single tries) past their deadline that the link's loss calls for.

        After a reset the session probes one try at a time until a deadline;
        on a lossy link the probes themselves may all be lost by then, so more
        follow: as many as silences may come before an answer (§6), at least
        ``NOISY_EXTRA_ATTEMPTS`` and at most ``MAX_SILENT_ATTEMPTS``. A link
        that has lost nothing gets none: there the deadline is enough.
        """
        loss = self._client.loss
        if not loss.rate():
            return 0
        request = wire_size(len(encode_payload(req)[1]))
        polls = loss.silent_tries_for(request, request + wire_size(answer))
        return min(MAX_SILENT_ATTEMPTS, max(NOISY_EXTRA_ATTEMPTS, polls))


def _holds(info: InfoResponse, sha256: bytes) -> bool:
    """Does a bootable slot hold the image with this hash (the delta's base)?"""
    return any(s.sha256 == sha256 and s.state is SlotState.CONFIRMED for s in info.slots)


def _begin_request(size: int, digest: bytes, version: str, enc: Encoded | None) -> BeginRequest:
    if enc is None:
        return BeginRequest(size=size, sha256=digest, version=version)
    flags = BeginFlags.COMPRESSED | (BeginFlags.DELTA if enc.flags_delta else BeginFlags.NONE)
    return BeginRequest(
        size=size,
        sha256=digest,
        version=version,
        flags=flags,
        encoding=Encoding.DEFLATE_BLOCKS,
        stream_size=len(enc.stream),
        stream_sha256=enc.stream_sha256,
        base_sha256=enc.base_sha256,
    )


def _scaled(progress: ProgressFn, image_size: int) -> ProgressFn:
    """Report an encoded stream's progress in image bytes, as the twin expects."""

    def report(phase: str, done: int, total: int) -> None:
        progress(phase, done * image_size // max(1, total), image_size)

    return report

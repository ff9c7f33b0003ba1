"""AN3155 commands in a row as one stop-and-wait conversation (:class:`~protocols.transport.Turns`).

The driver hands a run of commands (every Write Memory of an image, every Read
Memory of its read-back) to the transport at once. Each stage is still sent only
after the previous stage's ACK (AN3155: the loader has no receive FIFO), but the
next stage is written from the transport's readable callback as soon as the ACK
is in, without a trip through the driver's task; a command's checks (a read-back
compare, progress) run between its last answer and the next command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from protocols.stm32rom.codec import Exchange, Nack

#: A stage's deadline from (bytes sent, bytes expected back, device work after it).
DeadlineFn = Callable[[int, int, float], float]


@dataclass(frozen=True, slots=True)
class Job:
    """One command of a run."""

    make: Callable[[], Exchange]  # builds the command (again, when it is resent)
    work_s: float = 0.0  # the device's time after the last stage (erase, program)
    resends: int = 0  # NACKs answered by sending the command again (a damaged block)
    check: Callable[[Sequence[bytes]], None] | None = None  # judges its payloads; may raise


class Commands:
    """Walks jobs stage by stage; ``exchange`` is the command in progress (for messages)."""

    def __init__(self, jobs: Iterable[Job], deadline_for: DeadlineFn) -> None:
        self._jobs = iter(jobs)
        self._deadline_for = deadline_for
        self.deadline = 0.0
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.resent = 0
        self._attempt = 0
        self._job = next(self._jobs, None)
        self.exchange: Exchange | None = self._job.make() if self._job is not None else None
        #: The command after this one, built while this one's last answer is on its way.
        self._next: tuple[Job | None, Exchange | None] | None = None

    @property
    def done(self) -> bool:
        return self._job is None

    def outgoing(self) -> bytes:
        ex = self.exchange
        if self._job is None or ex is None:
            return b""
        out = ex.data_to_send()
        if out:
            work = self._job.work_s if ex.last_stage else 0.0
            self.deadline = self._deadline_for(len(out), ex.stage.reply_len, work)
            self.tx_bytes += len(out)
        return out

    def sent(self) -> None:
        """The bytes are out: build the next command while the device answers this one."""
        ex = self.exchange
        if self._next is None and ex is not None and ex.last_stage:
            job = next(self._jobs, None)
            self._next = (job, job.make() if job is not None else None)

    def receive(self, data: bytes) -> None:
        self.rx_bytes += len(data)
        job, ex = self._job, self.exchange
        assert job is not None and ex is not None, "answer bytes after the last command"
        try:
            ex.receive_data(data)
        except Nack:
            if self._attempt >= job.resends:
                raise
            self._attempt += 1
            self.resent += 1
            self.exchange = job.make()
            return
        if not ex.done:
            return
        if job.check is not None:
            job.check(ex.payloads)
        self._attempt = 0
        if self._next is None:
            self.sent()
        assert self._next is not None
        self._job, nxt = self._next
        self._next = None
        if nxt is not None:
            self.exchange = nxt

"""The crash-safe journal: what the gateway knows about each MCU and its update in flight.

One SQLite file in the state directory, in WAL mode with ``synchronous=FULL``,
so every committed call survives ``kill -9`` and power loss; each public
method is one short transaction. The one exception is :meth:`Journal.record_progress`,
a figure the MCU's own acknowledgement makes up for on a resume: it is committed
without its own fsync (``synchronous=NORMAL``), so it survives ``kill -9`` (the
write is in the OS's cache) and reaches the disk with the next durable commit;
power loss can only take it back to an earlier, still consistent figure.

It is used from one asyncio process: one connection, serialised by a lock,
with calls short enough to make on the event loop (a durable WAL commit is one
fsync).

Per MCU (keyed by uid hex) it holds the identity (device id, model), the port
it was last seen on and its last known slots; and at most one update in
progress: target version, package sha256 and URI, phase, bytes written,
resume offset, start time and attempt count. :meth:`Journal.finish_update`
moves it atomically into the history with its outcome.

It also caches identity assignments (device id -> IoT Hub hostname, never
keys) so a restart does not re-register every MCU with DPS.

Usage by the updater::

    journal = Journal.open(state_dir)
    journal.upsert_mcu(uid_hex, device_id=..., model=..., port=..., slots=[...])
    run = journal.update_in_progress(uid_hex)   # after a restart: resume it
    run = journal.begin_update(uid_hex, "2.0.0", sha, uri, total_bytes=n)
    journal.set_phase(uid_hex, Phase.APPLYING)
    journal.record_progress(uid_hex, bytes_written=k, resume_offset=k)
    journal.finish_update(uid_hex, Outcome.CURRENT)
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from firmware.urls import redact_text, redact_url
from gateway.codes import kind_of
from gateway.errors import JournalError, JournalFull
from protocols.driver import Phase  # the one phase vocabulary: journal, twin, logs
from protocols.failures import Kind

log = logging.getLogger("gateway.journal")

FILENAME = "journal.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mcu (
    uid TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    model TEXT NOT NULL,
    port TEXT,
    slots TEXT NOT NULL DEFAULT '[]',
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS update_run (
    uid TEXT PRIMARY KEY REFERENCES mcu(uid) ON DELETE CASCADE,
    target_version TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    package_uri TEXT NOT NULL,
    phase TEXT NOT NULL,
    bytes_written INTEGER NOT NULL DEFAULT 0,
    resume_offset INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    CHECK (resume_offset <= bytes_written)
);
CREATE TABLE IF NOT EXISTS update_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL,
    target_version TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    outcome TEXT NOT NULL,
    phase TEXT NOT NULL,
    error_code TEXT,
    message TEXT,
    bytes_written INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS update_history_uid ON update_history(uid, id);
CREATE TABLE IF NOT EXISTS assignment (
    device_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    assigned_at REAL NOT NULL
);
"""


class Outcome(StrEnum):
    """How an update ended."""

    CURRENT = "current"  # the MCU runs the target version, confirmed
    ERROR = "error"  # failed; slots unchanged or the old image still active
    ROLLEDBACK = "rolledback"  # trial boot failed; the bootloader reverted
    CANCELLED = "cancelled"  # superseded by a newer desired version or aborted


@dataclass(frozen=True)
class McuRecord:
    uid: str
    device_id: str
    model: str
    port: str | None
    slots: Any  # JSON as the updater stored it (list of slot dicts)
    last_seen: float


@dataclass(frozen=True)
class UpdateRecord:
    uid: str
    target_version: str
    package_sha256: str
    package_uri: str
    phase: Phase
    bytes_written: int
    resume_offset: int
    total_bytes: int | None
    started_at: float
    updated_at: float
    attempts: int


@dataclass(frozen=True)
class HistoryRecord:
    uid: str
    target_version: str
    package_sha256: str
    outcome: Outcome
    phase: Phase  # the phase the update was in when it ended
    error_code: str | None
    message: str | None
    bytes_written: int
    attempts: int
    started_at: float
    ended_at: float

    @property
    def error_kind(self) -> Kind | None:
        """What sort of failure ``error_code`` is (retry and ADU decide on it); None if none."""
        return None if self.error_code is None else kind_of(self.error_code)


class Journal:
    """One SQLite connection; every public method is one short, durable transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is implicit.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            # One process owns the journal. Exclusive locking keeps WAL's index in memory
            # instead of a -shm file, which a full disk cannot grow: the journal then
            # still opens and reads after a restart on a full disk (issue 17.1), and a
            # second gateway on the same state directory is refused.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self._failing = False  # the last best-effort write failed (logged once per streak)

    @classmethod
    def open(cls, state_dir: Path) -> Self:
        return cls(Path(state_dir) / FILENAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} has schema {version}, newer than this gateway's "
                f"{SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            self._db.executescript(f"BEGIN;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")

    @contextmanager
    def _tx(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; ``fsync=False`` commits it to the WAL without syncing the file."""
        with self._lock:
            try:
                if not fsync:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._db
                        self._db.execute("COMMIT")
                    except BaseException:
                        # Also after a failed COMMIT (a full disk): a transaction left open
                        # would refuse every later BEGIN, even once space is back.
                        if self._db.in_transaction:
                            try:
                                self._db.execute("ROLLBACK")
                            except sqlite3.Error:
                                log.debug("journal rollback failed", exc_info=True)
                        raise
                finally:
                    if not fsync:  # every other write stays fully durable
                        self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> JournalError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
        if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
            free = free_bytes(self.path.parent)
            return JournalFull(f"journal {self.path}: {exc} ({free} bytes free)", free)
        return JournalError(f"journal {self.path}: {exc}")

    def best_effort(self, write: Callable[[], object]) -> bool:
        """Run one write; on failure log it (once per streak) and go on.

        For writes the MCU's own state makes up for after a crash (progress,
        phase, slots, the end of an update): a full disk must never stop an
        agent from serving its MCU and reporting to its twin (issue 17.1).
        """
        try:
            write()
        except JournalError as exc:
            if not self._failing:
                log.warning("journal not written (the twin is still updated): %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("journal %s is writable again", self.path)
            self._failing = False
        return True

    # ------------------------------------------------------------ MCUs

    def upsert_mcu(
        self,
        uid: str,
        *,
        device_id: str,
        model: str,
        port: str | None,
        slots: Any = None,
        now: float | None = None,
    ) -> McuRecord:
        """Record an MCU seen on ``port``; ``slots=None`` keeps the last known slots."""
        seen = time.time() if now is None else now
        with self._tx() as db:
            db.execute(
                """INSERT INTO mcu (uid, device_id, model, port, slots, last_seen)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(uid) DO UPDATE SET device_id=excluded.device_id,
                       model=excluded.model, port=excluded.port, last_seen=excluded.last_seen,
                       slots=CASE WHEN ? THEN excluded.slots ELSE mcu.slots END""",
                (
                    uid,
                    device_id,
                    model,
                    port,
                    json.dumps(slots if slots is not None else []),
                    seen,
                    slots is not None,
                ),
            )
        record = self.mcu(uid)
        assert record is not None
        return record

    def set_slots(self, uid: str, slots: Any) -> None:
        self._update_mcu(uid, "slots = ?", json.dumps(slots))

    def set_port(self, uid: str, port: str | None) -> None:
        """``None`` marks the MCU as not attached (unplugged)."""
        self._update_mcu(uid, "port = ?", port)

    def _update_mcu(self, uid: str, assignment: str, value: object) -> None:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE mcu SET {assignment}, last_seen = ? WHERE uid = ?",
                (value, time.time(), uid),
            )
            if cursor.rowcount == 0:
                raise JournalError(f"journal: no MCU with uid {uid}")

    def mcu(self, uid: str) -> McuRecord | None:
        rows = self._read("SELECT * FROM mcu WHERE uid = ?", (uid,))
        return _mcu(rows[0]) if rows else None

    def mcus(self) -> list[McuRecord]:
        return [_mcu(r) for r in self._read("SELECT * FROM mcu ORDER BY uid")]

    # ------------------------------------------------------------ updates

    def begin_update(
        self,
        uid: str,
        target_version: str,
        package_sha256: str,
        package_uri: str,
        *,
        total_bytes: int | None = None,
        phase: Phase = Phase.DOWNLOADING,
        now: float | None = None,
    ) -> UpdateRecord:
        """Start (or restart) the update of ``uid``.

        If the same package (sha256) is already in progress, this is a retry:
        the attempt count goes up and progress and start time are kept, so the
        flash resumes. A different package replaces the old row; the caller
        should :meth:`finish_update` it as CANCELLED first to keep history.
        """
        stamp = time.time() if now is None else now
        sha = package_sha256.lower()
        package_uri = redact_url(package_uri)  # a URL's credentials never reach the disk
        with self._tx() as db:
            row = db.execute(
                "SELECT package_sha256 FROM update_run WHERE uid = ?", (uid,)
            ).fetchone()
            if row is not None and row["package_sha256"] == sha:
                db.execute(
                    """UPDATE update_run SET attempts = attempts + 1, updated_at = ?,
                       package_uri = ?, target_version = ?,
                       total_bytes = COALESCE(?, total_bytes) WHERE uid = ?""",
                    (stamp, package_uri, target_version, total_bytes, uid),
                )
            else:
                db.execute(
                    """INSERT OR REPLACE INTO update_run (uid, target_version, package_sha256,
                       package_uri, phase, total_bytes, started_at, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (uid, target_version, sha, package_uri, phase.value, total_bytes, stamp, stamp),
                )
        run = self.update_in_progress(uid)
        assert run is not None
        return run

    def set_phase(self, uid: str, phase: Phase) -> None:
        self._update_run(uid, "phase = ?", phase.value)

    def record_progress(
        self, uid: str, bytes_written: int, resume_offset: int | None = None
    ) -> None:
        """``resume_offset`` defaults to ``bytes_written`` (the MCU's cumulative ack)."""
        offset = bytes_written if resume_offset is None else resume_offset
        # No fsync of its own: the MCU's acknowledgement, not this figure, decides a resume.
        self._update_run(
            uid, "bytes_written = ?, resume_offset = ?", bytes_written, offset, fsync=False
        )

    def _update_run(self, uid: str, assignment: str, *values: object, fsync: bool = True) -> None:
        with self._tx(fsync=fsync) as db:
            cursor = db.execute(
                f"UPDATE update_run SET {assignment}, updated_at = ? WHERE uid = ?",
                (*values, time.time(), uid),
            )
            if cursor.rowcount == 0:
                raise JournalError(f"journal: no update in progress for uid {uid}")

    def update_in_progress(self, uid: str) -> UpdateRecord | None:
        rows = self._read("SELECT * FROM update_run WHERE uid = ?", (uid,))
        return _run(rows[0]) if rows else None

    def updates_in_progress(self) -> list[UpdateRecord]:
        return [_run(r) for r in self._read("SELECT * FROM update_run ORDER BY uid")]

    def finish_update(
        self,
        uid: str,
        outcome: Outcome,
        *,
        error_code: str | None = None,
        message: str | None = None,
        now: float | None = None,
    ) -> HistoryRecord | None:
        """Atomically move the update in progress into the history; None if there was none."""
        stamp = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT * FROM update_run WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return None
            db.execute(
                """INSERT INTO update_history (uid, target_version, package_sha256, outcome,
                   phase, error_code, message, bytes_written, attempts, started_at, ended_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    uid,
                    row["target_version"],
                    row["package_sha256"],
                    outcome.value,
                    row["phase"],
                    error_code,
                    None if message is None else redact_text(message),  # journals get copied
                    row["bytes_written"],
                    row["attempts"],
                    row["started_at"],
                    stamp,
                ),
            )
            db.execute("DELETE FROM update_run WHERE uid = ?", (uid,))
        return self.last_outcome(uid)

    def last_outcome(self, uid: str) -> HistoryRecord | None:
        rows = self._read(
            "SELECT * FROM update_history WHERE uid = ? ORDER BY id DESC LIMIT 1", (uid,)
        )
        return _history(rows[0]) if rows else None

    def history(self, uid: str) -> list[HistoryRecord]:
        rows = self._read("SELECT * FROM update_history WHERE uid = ? ORDER BY id", (uid,))
        return [_history(r) for r in rows]

    # ------------------------------------------------------------ identity assignments

    def get_assignment(self, device_id: str) -> str | None:
        rows = self._read("SELECT hostname FROM assignment WHERE device_id = ?", (device_id,))
        return str(rows[0]["hostname"]) if rows else None

    def put_assignment(self, device_id: str, hostname: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO assignment (device_id, hostname, assigned_at) "
                "VALUES (?, ?, ?)",
                (device_id, hostname, time.time()),
            )

    def drop_assignment(self, device_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM assignment WHERE device_id = ?", (device_id,))

    def check(self) -> str:
        """SQLite's own integrity check; ``"ok"`` when the file is sound."""
        return str(self._read("PRAGMA integrity_check")[0][0])


def _mcu(row: sqlite3.Row) -> McuRecord:
    return McuRecord(
        uid=row["uid"],
        device_id=row["device_id"],
        model=row["model"],
        port=row["port"],
        slots=json.loads(row["slots"]),
        last_seen=row["last_seen"],
    )


def _run(row: sqlite3.Row) -> UpdateRecord:
    return UpdateRecord(
        uid=row["uid"],
        target_version=row["target_version"],
        package_sha256=row["package_sha256"],
        package_uri=row["package_uri"],
        phase=Phase(row["phase"]),
        bytes_written=row["bytes_written"],
        resume_offset=row["resume_offset"],
        total_bytes=row["total_bytes"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
    )


def _history(row: sqlite3.Row) -> HistoryRecord:
    return HistoryRecord(
        uid=row["uid"],
        target_version=row["target_version"],
        package_sha256=row["package_sha256"],
        outcome=Outcome(row["outcome"]),
        phase=Phase(row["phase"]),
        error_code=row["error_code"],
        message=row["message"],
        bytes_written=row["bytes_written"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system (-1: unknown)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1

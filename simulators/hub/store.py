"""SQLite persistence, so that a restarted hub keeps devices, twins and versions.

The in-memory state in :mod:`simulators.hub.state` is the truth while running;
this module writes every change through and loads it all back at start.
Only the emulator's event-loop thread touches the connection.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from simulators.hub.registry import Device, DeviceStatus, Enrollment, EnrollmentKind
from simulators.hub.twins import Twin

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, primary_key TEXT NOT NULL, secondary_key TEXT NOT NULL,
    status TEXT NOT NULL, generation_id TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS twins (
    device_id TEXT PRIMARY KEY, tags TEXT NOT NULL,
    desired TEXT NOT NULL, desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL, reported_version INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS enrollments (
    kind TEXT NOT NULL, name TEXT NOT NULL, primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS subscriptions (
    device_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,
    PRIMARY KEY (device_id, topic_filter));
CREATE TABLE IF NOT EXISTS configurations (config_id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: Path) -> None:
        # The connection is created in the loop thread at start and used only there.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL with NORMAL sync is durable across a process kill, which is what a
        # "restart" test exercises, and keeps each commit cheap.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def setting(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, value))

    def devices(self) -> list[Device]:
        rows = self._db.execute("SELECT * FROM devices").fetchall()
        return [Device(r[0], r[1], r[2], DeviceStatus(r[3]), r[4], r[5]) for r in rows]

    def save_device(self, d: Device) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?)",
            (
                d.device_id,
                d.primary_key,
                d.secondary_key,
                d.status.value,
                d.generation_id,
                d.version,
            ),
        )

    def delete_device(self, device_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM devices WHERE device_id=?", (device_id,))
            self._db.execute("DELETE FROM twins WHERE device_id=?", (device_id,))
            self._db.execute("DELETE FROM subscriptions WHERE device_id=?", (device_id,))

    def twins(self) -> list[Twin]:
        rows = self._db.execute("SELECT * FROM twins").fetchall()
        return [
            Twin(r[0], json.loads(r[1]), json.loads(r[2]), r[3], json.loads(r[4]), r[5], r[6])
            for r in rows
        ]

    def save_twin(self, t: Twin) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                t.device_id,
                json.dumps(t.tags),
                json.dumps(t.desired),
                t.desired_version,
                json.dumps(t.reported),
                t.reported_version,
                t.version,
            ),
        )

    def enrollments(self) -> list[Enrollment]:
        rows = self._db.execute("SELECT * FROM enrollments").fetchall()
        return [Enrollment(EnrollmentKind(r[0]), r[1], r[2], r[3]) for r in rows]

    def save_enrollment(self, e: Enrollment) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO enrollments VALUES (?, ?, ?, ?)",
            (e.kind.value, e.name, e.primary_key, e.secondary_key),
        )

    # MQTT sessions (clean_session=0) outlive a hub restart, as on IoT Hub: a device
    # that reconnects to a restarted hub keeps receiving what it subscribed to.

    def subscriptions(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for device_id, topic_filter, qos in self._db.execute("SELECT * FROM subscriptions"):
            found.setdefault(device_id, {})[topic_filter] = qos
        return found

    def save_subscription(self, device_id: str, topic_filter: str, qos: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)", (device_id, topic_filter, qos)
        )

    def delete_subscriptions(
        self, device_id: str | None = None, topic_filter: str | None = None
    ) -> None:
        """Forget one filter, one device's session (``topic_filter=None``), or all (no args)."""
        if device_id is None:
            self._db.execute("DELETE FROM subscriptions")
        elif topic_filter is None:
            self._db.execute("DELETE FROM subscriptions WHERE device_id=?", (device_id,))
        else:
            self._db.execute(
                "DELETE FROM subscriptions WHERE device_id=? AND topic_filter=?",
                (device_id, topic_filter),
            )

    # Automatic device configurations, as opaque JSON records (see configurations.py).

    def configurations(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT record FROM configurations")]

    def save_configuration(self, config_id: str, record: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO configurations VALUES (?, ?)", (config_id, record))

    def delete_configuration(self, config_id: str) -> None:
        self._db.execute("DELETE FROM configurations WHERE config_id=?", (config_id,))

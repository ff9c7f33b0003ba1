"""What one MCU's ADU agent must remember across gateway restarts.

The reference agent persists its workflow so that, after a restart, it neither
repeats a finished deployment nor forgets one in progress, and reports the same
``installedUpdateId``. One small JSON file per MCU uid, written atomically, beside
the journal (whose schema is the update path's).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AduRecord:
    workflow_id: str | None = None  # the deployment last accepted
    retry_timestamp: str | None = None
    finished: bool = False  # False: it was running when the gateway stopped
    agent: dict[str, Any] = field(default_factory=dict)  # its final ``agent`` report
    installed_update_id: str | None = None  # the ADU update the MCU runs
    installed_version: str | None = None  # ... which is this firmware version

    @property
    def key(self) -> tuple[str, str | None] | None:
        return None if self.workflow_id is None else (self.workflow_id, self.retry_timestamp)


class AduStateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, uid: str) -> Path:
        return self.directory / f"{uid}.json"

    def load(self, uid: str) -> AduRecord:
        try:
            data = json.loads(self._path(uid).read_text(encoding="utf-8"))
            return AduRecord(**{k: data[k] for k in AduRecord.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError):
            return AduRecord()  # none yet, or unreadable: start as a fresh agent

    def save(self, uid: str, record: AduRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(uid)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
        with contextlib.suppress(OSError), open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)

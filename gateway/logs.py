"""Logging: one line per event with the MCU's device id and the update phase on each.

Text by default; ``json`` gives one object per line for log shippers. Callers log
through :func:`mcu_logger`, which stamps ``mcu`` and ``phase``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

from firmware.urls import redact_text

_TEXT = "%(asctime)s %(levelname)-7s mcu=%(mcu)s phase=%(phase)s %(name)s: %(message)s"


class _Defaults(logging.Filter):
    """SDK and library records carry no MCU context; give them placeholders."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "mcu"):
            record.mcu = "-"
        if not hasattr(record, "phase"):
            record.phase = "-"
        return True


class TextFormatter(logging.Formatter):
    """Whole lines, tracebacks included, with URL secrets masked (SAS queries, userinfo)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self._json(record))

    def _json(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "mcu": getattr(record, "mcu", "-"),
            "phase": getattr(record, "phase", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Defaults())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs are chatty at INFO and can echo connection details; keep them quiet.
    for noisy in ("azure", "paho", "urllib3", "msrest", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class McuLogger(logging.LoggerAdapter[logging.Logger]):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.pop("extra", None) or {})
        kwargs["extra"] = extra
        return msg, kwargs

    def phase(self, phase: str) -> McuLogger:
        return McuLogger(self.logger, {**(self.extra or {}), "phase": phase})


def mcu_logger(name: str, mcu: str, phase: str = "-") -> McuLogger:
    return McuLogger(logging.getLogger(name), {"mcu": mcu, "phase": phase})

"""Install windows: when an update may be applied ("02:00"-"04:00" in a time zone)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware.twin import InstallWindow


def seconds_until_open(window: InstallWindow, now: dt.datetime | None = None) -> float:
    """0 when inside the window, else seconds until it next opens."""
    try:
        tz: dt.tzinfo = ZoneInfo(window.tz)
    except (ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    current = (now or dt.datetime.now(dt.UTC)).astimezone(tz)
    start = _at(current, window.start)
    end = _at(current, window.end)
    if start <= end:
        inside = start <= current < end
    else:  # crosses midnight
        inside = current >= start or current < end
    if inside:
        return 0.0
    if current >= start:
        start += dt.timedelta(days=1)
    return (start - current).total_seconds()


def _at(day: dt.datetime, hhmm: str) -> dt.datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)

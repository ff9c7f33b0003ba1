"""The emulator's clock: IoT Hub's real cadences, all sped up by one factor.

IoT Hub evaluates automatic configurations shortly after one is created and
then every five minutes, recounting their metrics only then, and its query
results trail the twins they read ("Automatic device management" and "Query
twins", learn.microsoft.com). Operation throttles are per minute or per
second ("Quotas and throttling"). Every one of those durations is *model*
time; ``scale`` maps it to real time, so a test runs the real ratios in a
fraction of the time (``scale=300`` makes five minutes one second). A mode
that changes one duration without the others does not exist on purpose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Model seconds between configuration evaluations ("every five minutes").
EVALUATION_INTERVAL = 300.0
#: Model seconds from creating or changing a configuration to its first evaluation
#: (the docs say "shortly"; the emulator's choice).
FIRST_EVALUATION = 10.0
#: Model seconds a query view may trail the twins (eventual consistency; the
#: emulator's choice within what the docs ask clients to tolerate).
QUERY_LAG = 60.0


@dataclass(frozen=True)
class Timing:
    """Model time for one emulator; ``scale`` model seconds pass per real second."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.scale < float("inf")):
            raise ValueError(f"time scale must be a positive number, not {self.scale!r}")

    def now(self) -> float:
        """Model seconds on a monotonic clock."""
        return time.monotonic() * self.scale

    def real(self, model_seconds: float) -> float:
        """Real seconds that ``model_seconds`` take."""
        return model_seconds / self.scale

    @property
    def evaluation_interval(self) -> float:
        return self.real(EVALUATION_INTERVAL)

    @property
    def first_evaluation(self) -> float:
        return self.real(FIRST_EVALUATION)

    @property
    def query_lag(self) -> float:
        """In model seconds, like :meth:`now`."""
        return QUERY_LAG

"""IoT Hub's operation throttles per tier and unit, as token buckets (sans-I/O).

Rates are from "IoT Hub quotas and throttling" (learn.microsoft.com,
iot-hub-devguide-quotas-throttling), table "Operation throttles". A throttle
"applied in minute ranges" is a bucket holding one minute of its rate; a
per-second one holds one second. Time is passed in (model seconds, see
:mod:`simulators.hub.timing`), so nothing here reads a clock. Over the limit,
IoT Hub answers 429 and "the client should back off and retry": :meth:`take`
says how long to wait.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Operation(enum.Enum):
    """Throttled service operations; each line of the table is one bucket."""

    REGISTRY = "identity registry operations"  # device create, get, update, delete
    QUERY = "queries"  # every query page is one request
    TWIN_READ = "twin reads"
    TWIN_UPDATE = "twin updates"
    CONFIGURATION = "configurations"  # create, update, list, delete
    JOB = "jobs operations"  # create, get, list, cancel


class Tier(enum.StrEnum):
    F1 = "F1"  # free: the S1 rates, one unit, 10 configurations
    S1 = "S1"
    S2 = "S2"
    S3 = "S3"


@dataclass(frozen=True)
class Rate:
    per_second: float
    window: float  # seconds of rate the bucket holds (60 for a per-minute throttle)

    @property
    def capacity(self) -> float:
        return self.per_second * self.window


def _per_min(n: float) -> Rate:
    return Rate(n / 60.0, 60.0)


def _per_sec(n: float) -> Rate:
    return Rate(n, 1.0)


def rates(tier: Tier, units: int) -> dict[Operation, Rate]:
    """The documented throttles of one hub (``units`` is ignored on the free tier)."""
    u = 1 if tier is Tier.F1 else units
    big = tier is Tier.S3
    twin_read = {Tier.S2: max(100, 10 * u), Tier.S3: 500 * u}.get(tier, 100)
    twin_update = {Tier.S2: max(50, 5 * u), Tier.S3: 250 * u}.get(tier, 50)
    return {
        Operation.REGISTRY: _per_min((5000 if big else 100) * u),
        Operation.QUERY: _per_min((1000 if big else 20) * u),
        Operation.TWIN_READ: _per_sec(twin_read),
        Operation.TWIN_UPDATE: _per_sec(twin_update),
        Operation.CONFIGURATION: _per_min(20 * u),
        Operation.JOB: _per_min((5000 if big else 100) * u),
    }


@dataclass
class _Bucket:
    rate: Rate
    tokens: float
    at: float

    def take(self, now: float) -> float:
        self.tokens = min(self.rate.capacity, self.tokens + (now - self.at) * self.rate.per_second)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate.per_second


@dataclass
class Throttle:
    """One hub's buckets; ``take`` admits a request (0.0) or says how long to wait."""

    tier: Tier = Tier.S1
    units: int = 1
    #: Requests answered 429 so far, and all requests, per operation (for benchmarks).
    refused: dict[Operation, int] = field(default_factory=dict)
    taken: dict[Operation, int] = field(default_factory=dict)
    _buckets: dict[Operation, _Bucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.units < 1:
            raise ValueError("units must be at least 1")

    def take(self, op: Operation, now: float) -> float:
        bucket = self._buckets.get(op)
        if bucket is None:
            rate = rates(self.tier, self.units)[op]
            bucket = self._buckets[op] = _Bucket(rate, rate.capacity, now)
        wait = bucket.take(now)
        self.taken[op] = self.taken.get(op, 0) + 1
        if wait:
            self.refused[op] = self.refused.get(op, 0) + 1
        return wait

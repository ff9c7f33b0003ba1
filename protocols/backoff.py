"""Exponential backoff, the one implementation: ``base``, ``2 * base``, ... capped at ``cap``.

Every loop that waits longer after each failure in a row uses this (the
gateway's update retries, package downloads, hub reconnects and resends,
re-probing silent ports), so they all count failures the same way and none
overflows after a long outage. ``jitter`` scales each delay by a factor drawn
uniformly from ``(low, high)``: ``(1, 1)`` is none, ``(0.9, 1.1)`` spreads MCUs
that failed together, ``(0, 1)`` is "full jitter" for many clients of one server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Doubling stops here; 2**64 times any base is past every cap anyone sets.
_MAX_DOUBLINGS = 64

NO_JITTER = (1.0, 1.0)
FULL_JITTER = (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    cap: float
    jitter: tuple[float, float] = NO_JITTER

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 is the first failure)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        delay = min(self.cap, self.base * 2.0**doublings)
        low, high = self.jitter
        if low == high:
            return delay * low
        return delay * (rng or random.Random()).uniform(low, high)

    def longest(self, rng: random.Random | None = None) -> float:
        """The capped delay (with jitter): for a loop that keeps trying at its slowest."""
        return self.delay(_MAX_DOUBLINGS + 1, rng)

    def counter(self, rng: random.Random | None = None) -> BackoffCounter:
        """A running count of failures for one retry loop."""
        return BackoffCounter(self, rng)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many failures in a row a retry loop takes, and how long it waits after each."""

    attempts: int
    backoff: Backoff

    def next_delay(self, failures: int, rng: random.Random | None = None) -> float | None:
        """Seconds before attempt ``failures + 1``, or None once ``attempts`` have failed."""
        if failures >= self.attempts:
            return None
        return self.backoff.delay(failures, rng)


class BackoffCounter:
    """The delays of one retry loop: :meth:`next` after a failure, :meth:`reset` on success."""

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self.rng = rng
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return self.backoff.delay(self.failures, self.rng)

    def reset(self) -> None:
        self.failures = 0


__all__ = ["FULL_JITTER", "NO_JITTER", "Backoff", "BackoffCounter", "RetryPolicy"]

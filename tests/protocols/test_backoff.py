"""The one backoff: doubling from base to cap, jitter within its bounds, no overflow."""

from __future__ import annotations

import random

from protocols.backoff import FULL_JITTER, Backoff, RetryPolicy


def test_delays_double_from_the_base_up_to_the_cap() -> None:
    counter = Backoff(0.5, 30.0).counter()
    assert [counter.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    counter.reset()
    assert counter.next() == 0.5


def test_jitter_scales_each_delay_within_its_bounds() -> None:
    rng = random.Random(1)
    spread = [Backoff(30.0, 900.0, (0.9, 1.1)).delay(2, rng) for _ in range(200)]
    assert all(54.0 <= d <= 66.0 for d in spread) and len(set(spread)) > 100
    full = [Backoff(1.0, 8.0, FULL_JITTER).delay(10, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in full) and min(full) < 1.0


def test_a_long_outage_stays_at_the_cap() -> None:
    assert Backoff(1.0, 3600.0).delay(100_000) == 3600.0
    assert 810.0 <= Backoff(30.0, 900.0, (0.9, 1.1)).longest(random.Random(2)) <= 990.0


def test_a_retry_policy_stops_after_its_attempts() -> None:
    policy = RetryPolicy(3, Backoff(30.0, 900.0))
    assert [policy.next_delay(n) for n in (1, 2, 3)] == [30.0, 60.0, None]

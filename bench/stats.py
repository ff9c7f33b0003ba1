"""Order statistics every benchmark reports the same way.

``percentile`` is the nearest-rank percentile (the smallest value with at least
q of the samples at or below it), so p50 of two values is the lower one and p99
of 100 values is the 99th: the definition the benchmark tables state. ``spread``
summarises repeated runs as min / median / max.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; NaN when there are none."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile {q} is not in (0, 1]")
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Spread:
    low: float
    median: float
    high: float
    runs: int

    def __str__(self) -> str:
        return f"{self.median:.3f} ({self.low:.3f}-{self.high:.3f}, {self.runs} runs)"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        nan = float("nan")
        return Spread(nan, nan, nan, 0)
    return Spread(min(values), statistics.median(values), max(values), len(values))


def report_checks(checks: Sequence[tuple[str, bool, str]]) -> bool:
    """Print each target as PASS or FAIL with its measured value; True if all passed."""
    for what, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {value}")
    return all(ok for _, ok, _ in checks)

"""The one percentile every benchmark table uses (two copies used to disagree)."""

from __future__ import annotations

import math

import pytest

from bench.stats import percentile, spread


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0, 1.0], 0.5) == 1.0
    assert percentile([7.0], 0.01) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="quantile"):
        percentile([1.0], 0.0)


def test_spread_of_runs() -> None:
    s = spread([0.19, 0.16, 0.17, 0.18])
    assert (s.low, s.high, s.runs) == (0.16, 0.19, 4)
    assert s.median == pytest.approx(0.175)
    assert str(spread([1.0, 2.0, 3.0])) == "2.000 (1.000-3.000, 3 runs)"

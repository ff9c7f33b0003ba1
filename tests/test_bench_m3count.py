"""bench.m3count counts what the Cortex-M3 build of the decoders executes (issue 21)."""

from __future__ import annotations

import random
from pathlib import Path

from bench import m3count
from protocols.mcugw.encoding import compress, delta, thumb_code


def _code_like(seed: int, n: int) -> bytes:
    return thumb_code(random.Random(seed), n)


def test_the_count_grows_with_the_work_and_a_delta_costs_less(tmp_path: Path) -> None:
    elf = m3count.build(tmp_path)
    small, big = _code_like(1, 8 * 1024), _code_like(1, 32 * 1024)
    n_small = m3count.count(elf, bytes(16), small, compress(small).stream, False)
    n_big = m3count.count(elf, bytes(16), big, compress(big).stream, False)
    # LZMA costs per output byte: four times the image, about four times the count.
    assert 3.0 < n_big / n_small < 5.0, (n_small, n_big)
    # Tens of Thumb-2 instructions per output byte, not a constant or a tick count.
    assert 20 * len(big) < n_big < 2000 * len(big)
    changed = big[:9000] + b"a small change" + big[9000:]
    n_delta = m3count.count(elf, big, changed, delta(big, changed).stream, True)
    assert 0 < n_delta < n_big

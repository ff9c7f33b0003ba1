"""Suite-wide hygiene: a test that leaks a process, a file descriptor or a thread fails itself.

Resources of wider-scoped fixtures are already running when the snapshot is taken
(pytest sets those up first) and are therefore never counted against a test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import leaks


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.environ.get("MCU_GATEWAY_TEST_LEAKS", "1") == "0":
        yield
        return
    before = leaks.Snapshot.take()
    yield
    pids, fds, threads = before.leaks()
    if pids or fds or threads:
        leaks.kill(pids)
        pytest.fail(f"{request.node.nodeid} leaked: {leaks.report(pids, fds, threads)}")

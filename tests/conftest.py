"""Suite-wide hygiene: a test that leaks a process, a file descriptor or a thread is named.

Each test's new processes, fds and threads are noted at its teardown (after its own
fixtures are gone; wider-scoped fixtures were running before it started, so they
never count). A test module may keep something one of its tests started for the
module's later tests and stop it in a module fixture; whatever is still there once
the module is done fails the module's last test, naming the test that started it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests import leaks

# Property tests check behaviour, not speed: on a loaded CI machine (4 workers on 2
# cores) hypothesis' default 200 ms deadline and too-slow health check fail good code.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("suite")

_ON = os.environ.get("MCU_GATEWAY_TEST_LEAKS", "1") != "0"


@pytest.fixture(scope="module", autouse=True)
def _module_leaks() -> Iterator[leaks.Suspects]:
    suspects = leaks.Suspects()
    yield suspects
    if _ON:
        left = suspects.still_there()
        if left:
            pytest.fail(left)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest, _module_leaks: leaks.Suspects) -> Iterator[None]:
    if not _ON:
        yield
        return
    before = leaks.Snapshot.take()
    yield
    _module_leaks.note(request.node.nodeid, *before.leaks())

"""Loopback addresses for tests: 127.<NET>.<suite>.<host>.

``MCU_GATEWAY_TEST_NET`` (default 0, at most 49) picks the second octet, so
several checkouts can run the suite at once on one machine without two hubs
fighting over the SDK's fixed port 8883 on the same address. Under
pytest-xdist each worker adds 50 per worker number, so workers never share an
address either.
"""

from __future__ import annotations

import os


def _net() -> int:
    base = int(os.environ.get("MCU_GATEWAY_TEST_NET", "0"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    if worker.startswith("gw") and worker[2:].isdigit():
        return base + 50 * (int(worker[2:]) + 1)
    return base


NET = _net()


def subnet(suite: int) -> str:
    """The ``127.N.suite.`` prefix a suite appends its host numbers to."""
    return f"127.{NET}.{suite}."


def addr(suite: int, host: int) -> str:
    return f"{subnet(suite)}{host}"

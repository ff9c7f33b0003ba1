"""Loopback addresses for tests: 127.<NET>.<suite>.<host>.

``MCU_GATEWAY_TEST_NET`` (default 0) picks the second octet, so several
checkouts can run the suite at once on one machine without two hubs fighting
over the SDK's fixed port 8883 on the same address.
"""

from __future__ import annotations

import os

NET = int(os.environ.get("MCU_GATEWAY_TEST_NET", "0"))


def subnet(suite: int) -> str:
    """The ``127.N.suite.`` prefix a suite appends its host numbers to."""
    return f"127.{NET}.{suite}."


def addr(suite: int, host: int) -> str:
    return f"{subnet(suite)}{host}"
